package pytorch

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// The values the restricted unpickler builds. Nothing else can come out of
// a pickle: there is no way to construct an arbitrary object, and no
// callable other than the handful in allowedGlobals is ever invoked (they
// are Go functions that build these values).
type (
	// tuple is a Python tuple.
	tuple []any
	// list is a Python list (mutable: APPEND grows it in place).
	list struct{ items []any }
	// dict is a Python dict or OrderedDict with its keys in insertion order.
	dict struct {
		keys []any
		vals map[any]any
	}
	// global is a module attribute named by GLOBAL or STACK_GLOBAL; only
	// the ones in allowedGlobals can be named.
	global struct{ module, name string }
	// storage is a persistent reference to one storage record of the
	// archive ('storage', torch.XStorage, key, location, numel).
	storage struct {
		dtype DType
		key   string
		numel int64
	}
	// mark is the MARK opcode's place on the stack.
	mark struct{}
)

func newDict() *dict { return &dict{vals: map[any]any{}} }

// set stores v under k, keeping first-insertion order; k must be hashable
// (a string, int, bool, float or nil).
func (d *dict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, float64, nil:
	default:
		return fmt.Errorf("dict key of type %s is not supported", typeName(k))
	}
	if _, ok := d.vals[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[k] = v
	return nil
}

// storageTypes are the torch storage classes a state dict names, with the
// element type each holds.
var storageTypes = map[string]DType{
	"FloatStorage": F32, "DoubleStorage": F64, "HalfStorage": F16, "BFloat16Storage": BF16,
	"LongStorage": I64, "IntStorage": I32, "ShortStorage": I16, "CharStorage": I8,
	"ByteStorage": U8, "BoolStorage": BOOL,
}

// allowedGlobals are the only module attributes a pickle may name.
var allowedGlobals = map[string]bool{
	"collections.OrderedDict":                    true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_tensor":               true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
}

func allowedGlobal(module, name string) bool {
	if module == "torch" {
		_, ok := storageTypes[name]
		return ok
	}
	return allowedGlobals[module+"."+name]
}

// limits of the unpickler: far above what a state dict needs, low enough
// that no input makes it allocate much more than its own size.
const (
	maxStack = 1 << 20
	maxMemo  = 1 << 22
)

// machine is the pickle virtual machine restricted to the opcodes of
// protocols 2 to 4 that torch.save writes for a state dict.
type machine struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
}

// unpickle runs the pickle in data and returns the value STOP leaves.
func unpickle(data []byte) (any, error) {
	m := &machine{data: data, memo: map[uint32]any{}}
	for {
		if m.pos >= len(m.data) {
			return nil, fmt.Errorf("pickle: ends at byte %d without STOP", m.pos)
		}
		op := m.data[m.pos]
		at := m.pos
		m.pos++
		done, err := m.step(op)
		if err != nil {
			return nil, fmt.Errorf("pickle: opcode 0x%02x at byte %d: %w", op, at, err)
		}
		if done {
			if len(m.stack) != 1 || len(m.marks) != 0 {
				return nil, fmt.Errorf("pickle: STOP with %d values and %d marks on the stack, want 1 and 0", len(m.stack), len(m.marks))
			}
			if _, ok := m.stack[0].(mark); ok {
				return nil, fmt.Errorf("pickle: STOP leaves a mark")
			}
			return m.stack[0], nil
		}
		if len(m.stack) > maxStack {
			return nil, fmt.Errorf("pickle: more than %d values on the stack", maxStack)
		}
	}
}

// step executes one opcode; it reports whether it was STOP.
func (m *machine) step(op byte) (bool, error) {
	switch op {
	case 0x80: // PROTO
		p, err := m.bytes(1)
		if err != nil {
			return false, err
		}
		if p[0] < 2 || p[0] > 5 {
			return false, fmt.Errorf("protocol %d is not supported (torch.save writes 2)", p[0])
		}
	case 0x95: // FRAME: a length prefix, the framed opcodes follow inline
		if _, err := m.bytes(8); err != nil {
			return false, err
		}
	case '.': // STOP
		return true, nil
	case '(': // MARK
		m.marks = append(m.marks, len(m.stack))
		m.push(mark{})
	case '0': // POP
		_, err := m.pop()
		return false, err
	case '1': // POP_MARK
		_, err := m.popMark()
		return false, err
	case 'N':
		m.push(nil)
	case 0x88: // NEWTRUE
		m.push(true)
	case 0x89: // NEWFALSE
		m.push(false)
	case 'J', 'K', 'M', 0x8a, 'G': // BININT, BININT1, BININT2, LONG1, BINFLOAT
		return false, m.number(op)
	case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
		return false, m.unicode(op)
	case ')': // EMPTY_TUPLE
		m.push(tuple{})
	case 't': // TUPLE
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		m.push(tuple(items))
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		return false, m.smallTuple(int(op-0x85) + 1)
	case ']': // EMPTY_LIST
		m.push(&list{})
	case 'l': // LIST
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		m.push(&list{items: items})
	case 'a', 'e': // APPEND, APPENDS
		return false, m.appendItems(op == 'e')
	case '}': // EMPTY_DICT
		m.push(newDict())
	case 'd': // DICT
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		d := newDict()
		m.push(d)
		return false, setPairs(d, items)
	case 's', 'u': // SETITEM, SETITEMS
		return false, m.setItems(op == 'u')
	case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
		return false, m.put(op)
	case 'h', 'j': // BINGET, LONG_BINGET
		return false, m.get(op)
	case 'c': // GLOBAL
		return false, m.global()
	case 0x93: // STACK_GLOBAL
		return false, m.stackGlobal()
	case 'R': // REDUCE
		return false, m.reduce()
	case 'b': // BUILD
		return false, m.build()
	case 'Q': // BINPERSID
		return false, m.persistent()
	default:
		return false, fmt.Errorf("opcode not allowed in a state dict")
	}
	return false, nil
}

func (m *machine) push(v any) { m.stack = append(m.stack, v) }

func (m *machine) pop() (any, error) {
	n := len(m.stack)
	if n == 0 {
		return nil, fmt.Errorf("stack underflow")
	}
	v := m.stack[n-1]
	if _, ok := v.(mark); ok {
		return nil, fmt.Errorf("a value was expected, found a mark")
	}
	m.stack = m.stack[:n-1]
	return v, nil
}

func (m *machine) top() (any, error) {
	if len(m.stack) == 0 {
		return nil, fmt.Errorf("stack underflow")
	}
	v := m.stack[len(m.stack)-1]
	if _, ok := v.(mark); ok {
		return nil, fmt.Errorf("a value was expected, found a mark")
	}
	return v, nil
}

// popMark pops everything above the last mark, and the mark.
func (m *machine) popMark() ([]any, error) {
	if len(m.marks) == 0 {
		return nil, fmt.Errorf("no mark on the stack")
	}
	at := m.marks[len(m.marks)-1]
	m.marks = m.marks[:len(m.marks)-1]
	items := append([]any(nil), m.stack[at+1:]...)
	m.stack = m.stack[:at]
	return items, nil
}

func (m *machine) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(m.data)-m.pos {
		return nil, fmt.Errorf("needs %d bytes, %d left", n, len(m.data)-m.pos)
	}
	b := m.data[m.pos : m.pos+n]
	m.pos += n
	return b, nil
}

func (m *machine) number(op byte) error {
	switch op {
	case 'J':
		b, err := m.bytes(4)
		if err != nil {
			return err
		}
		m.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case 'K':
		b, err := m.bytes(1)
		if err != nil {
			return err
		}
		m.push(int64(b[0]))
	case 'M':
		b, err := m.bytes(2)
		if err != nil {
			return err
		}
		m.push(int64(binary.LittleEndian.Uint16(b)))
	case 0x8a: // LONG1: n bytes of two's-complement little endian
		n, err := m.bytes(1)
		if err != nil {
			return err
		}
		if n[0] > 8 {
			return fmt.Errorf("integer of %d bytes does not fit 64 bits", n[0])
		}
		b, err := m.bytes(int(n[0]))
		if err != nil {
			return err
		}
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if len(b) > 0 && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
			v |= ^uint64(0) << (8 * len(b)) // sign-extend
		}
		m.push(int64(v))
	case 'G':
		b, err := m.bytes(8)
		if err != nil {
			return err
		}
		m.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	}
	return nil
}

func (m *machine) unicode(op byte) error {
	var n uint64
	switch op {
	case 0x8c:
		b, err := m.bytes(1)
		if err != nil {
			return err
		}
		n = uint64(b[0])
	case 'X':
		b, err := m.bytes(4)
		if err != nil {
			return err
		}
		n = uint64(binary.LittleEndian.Uint32(b))
	default:
		b, err := m.bytes(8)
		if err != nil {
			return err
		}
		n = binary.LittleEndian.Uint64(b)
	}
	if n > uint64(len(m.data)-m.pos) {
		return fmt.Errorf("string of %d bytes, %d left", n, len(m.data)-m.pos)
	}
	b, _ := m.bytes(int(n))
	m.push(string(b))
	return nil
}

func (m *machine) smallTuple(n int) error {
	if len(m.stack) < n {
		return fmt.Errorf("stack underflow")
	}
	items := append(tuple(nil), m.stack[len(m.stack)-n:]...)
	for _, v := range items {
		if _, ok := v.(mark); ok {
			return fmt.Errorf("a value was expected, found a mark")
		}
	}
	m.stack = m.stack[:len(m.stack)-n]
	m.push(items)
	return nil
}

func (m *machine) appendItems(many bool) error {
	items, err := m.popItems(many, 1)
	if err != nil {
		return err
	}
	t, err := m.top()
	if err != nil {
		return err
	}
	l, ok := t.(*list)
	if !ok {
		return fmt.Errorf("APPEND to a %s, not a list", typeName(t))
	}
	l.items = append(l.items, items...)
	return nil
}

func (m *machine) setItems(many bool) error {
	items, err := m.popItems(many, 2)
	if err != nil {
		return err
	}
	t, err := m.top()
	if err != nil {
		return err
	}
	d, ok := t.(*dict)
	if !ok {
		return fmt.Errorf("SETITEM on a %s, not a dict", typeName(t))
	}
	return setPairs(d, items)
}

// popItems pops the items of an APPEND/SETITEM-like opcode: everything
// above the topmost mark (many), or the top n values, in stack order.
func (m *machine) popItems(many bool, n int) ([]any, error) {
	if many {
		return m.popMark()
	}
	items := make([]any, n)
	for i := n - 1; i >= 0; i-- {
		v, err := m.pop()
		if err != nil {
			return nil, err
		}
		items[i] = v
	}
	return items, nil
}

func setPairs(d *dict, items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("odd number of items (%d) for key-value pairs", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (m *machine) put(op byte) error {
	var idx uint32
	switch op {
	case 'q':
		b, err := m.bytes(1)
		if err != nil {
			return err
		}
		idx = uint32(b[0])
	case 'r':
		b, err := m.bytes(4)
		if err != nil {
			return err
		}
		idx = binary.LittleEndian.Uint32(b)
	default:
		idx = uint32(len(m.memo))
	}
	v, err := m.top()
	if err != nil {
		return err
	}
	if _, ok := m.memo[idx]; !ok && len(m.memo) >= maxMemo {
		return fmt.Errorf("more than %d memo entries", maxMemo)
	}
	m.memo[idx] = v
	return nil
}

func (m *machine) get(op byte) error {
	var idx uint32
	if op == 'h' {
		b, err := m.bytes(1)
		if err != nil {
			return err
		}
		idx = uint32(b[0])
	} else {
		b, err := m.bytes(4)
		if err != nil {
			return err
		}
		idx = binary.LittleEndian.Uint32(b)
	}
	v, ok := m.memo[idx]
	if !ok {
		return fmt.Errorf("memo entry %d was never stored", idx)
	}
	m.push(v)
	return nil
}

// line reads a newline-terminated argument of GLOBAL.
func (m *machine) line() (string, error) {
	i := strings.IndexByte(string(m.data[m.pos:min(len(m.data), m.pos+256)]), '\n')
	if i < 0 {
		return "", fmt.Errorf("GLOBAL argument without a newline in 256 bytes")
	}
	s := string(m.data[m.pos : m.pos+i])
	m.pos += i + 1
	return s, nil
}

func (m *machine) global() error {
	mod, err := m.line()
	if err != nil {
		return err
	}
	name, err := m.line()
	if err != nil {
		return err
	}
	return m.pushGlobal(mod, name)
}

func (m *machine) stackGlobal() error {
	name, err := m.pop()
	if err != nil {
		return err
	}
	mod, err := m.pop()
	if err != nil {
		return err
	}
	ms, ok1 := mod.(string)
	ns, ok2 := name.(string)
	if !ok1 || !ok2 {
		return fmt.Errorf("STACK_GLOBAL of a %s and a %s, not two strings", typeName(mod), typeName(name))
	}
	return m.pushGlobal(ms, ns)
}

// pushGlobal is where every other object a pickle could reach is refused.
func (m *machine) pushGlobal(module, name string) error {
	if !allowedGlobal(module, name) {
		return &GlobalError{Module: module, Name: name}
	}
	m.push(global{module, name})
	return nil
}

// GlobalError is the refusal of a pickle naming a module attribute that a
// state dict does not need (os.system, builtins.eval, a model class …).
type GlobalError struct{ Module, Name string }

func (e *GlobalError) Error() string {
	return fmt.Sprintf("global %s.%s is not allowed: a checkpoint is read as a state dict (tensors, torch storages, OrderedDict) and nothing in it is executed", e.Module, e.Name)
}

func (m *machine) persistent() error {
	pid, err := m.pop()
	if err != nil {
		return err
	}
	t, ok := pid.(tuple)
	if !ok || len(t) != 5 {
		return fmt.Errorf("persistent id %s is not a 5-tuple ('storage', type, key, location, numel)", typeName(pid))
	}
	tag, _ := t[0].(string)
	g, gok := t[1].(global)
	key, kok := t[2].(string)
	_, lok := t[3].(string)
	numel, nok := t[4].(int64)
	if tag != "storage" || !gok || !kok || !lok || !nok || g.module != "torch" || numel < 0 {
		return fmt.Errorf("persistent id is not ('storage', torch.XStorage, key, location, numel)")
	}
	dt, ok := storageTypes[g.name]
	if !ok {
		return fmt.Errorf("persistent id names torch.%s, not a storage type", g.name)
	}
	m.push(&storage{dtype: dt, key: key, numel: numel})
	return nil
}

func (m *machine) reduce() error {
	args, err := m.pop()
	if err != nil {
		return err
	}
	fn, err := m.pop()
	if err != nil {
		return err
	}
	g, ok := fn.(global)
	if !ok {
		return fmt.Errorf("REDUCE calls a %s, not an allowed global", typeName(fn))
	}
	a, ok := args.(tuple)
	if !ok {
		return fmt.Errorf("REDUCE arguments are a %s, not a tuple", typeName(args))
	}
	v, err := call(g, a)
	if err != nil {
		return fmt.Errorf("%s.%s: %w", g.module, g.name, err)
	}
	m.push(v)
	return nil
}

// build is BUILD: setting an object's state. Only a dict's attributes (the
// _metadata torch attaches to a state dict) are accepted, and dropped.
func (m *machine) build() error {
	state, err := m.pop()
	if err != nil {
		return err
	}
	obj, err := m.top()
	if err != nil {
		return err
	}
	if _, ok := obj.(*dict); !ok {
		return fmt.Errorf("BUILD on a %s: only a state dict's attributes may be set", typeName(obj))
	}
	switch state.(type) {
	case *dict, nil:
		return nil
	}
	return fmt.Errorf("BUILD with a %s state", typeName(state))
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case tuple:
		return "tuple"
	case *list:
		return "list"
	case *dict:
		return "dict"
	case global:
		return "global " + x.module + "." + x.name
	case *storage:
		return "storage"
	case *Tensor:
		return "tensor"
	case mark:
		return "mark"
	}
	return fmt.Sprintf("%T", v)
}
