package gguf

import (
	"fmt"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value, numbered as in the
// GGUF specification.
type ValueType uint32

// The GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var typeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32",
	"float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String returns the specification's name of the type, or "type(N)".
func (t ValueType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// size is the encoded size of a scalar of type t; 0 for string and array,
// whose size depends on their content, and -1 for an unknown type.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	case TypeString, TypeArray:
		return 0
	}
	return -1
}

// minSize is the fewest bytes an encoded value of type t can take: the
// bound used to refuse counts that cannot fit in what is left of a file.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8 // length
	case TypeArray:
		return 12 // element type + count
	}
	return t.size()
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}

// Value is a typed GGUF metadata value. Its content is one of these Go
// types, by Type: uint8, int8, uint16, int16, uint32, int32, float32, bool,
// string, uint64, int64, float64; for TypeArray a slice of one of those
// (e.g. []string, []float32) or, for an array of arrays, []Value.
// Slices returned by a Value share its storage and must not be modified.
type Value struct {
	Type ValueType
	v    any
}

// ValueOf wraps a Go value as a GGUF value. It accepts the scalar and slice
// types listed on Value, []Value whose elements are all arrays, and a Value
// (returned unchanged).
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{TypeUint8, x}, nil
	case int8:
		return Value{TypeInt8, x}, nil
	case uint16:
		return Value{TypeUint16, x}, nil
	case int16:
		return Value{TypeInt16, x}, nil
	case uint32:
		return Value{TypeUint32, x}, nil
	case int32:
		return Value{TypeInt32, x}, nil
	case float32:
		return Value{TypeFloat32, x}, nil
	case bool:
		return Value{TypeBool, x}, nil
	case string:
		return Value{TypeString, x}, nil
	case uint64:
		return Value{TypeUint64, x}, nil
	case int64:
		return Value{TypeInt64, x}, nil
	case float64:
		return Value{TypeFloat64, x}, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32,
		[]bool, []string, []uint64, []int64, []float64:
		return Value{TypeArray, x}, nil
	case []Value:
		for i, e := range x {
			if e.Type != TypeArray {
				return Value{}, fmt.Errorf("gguf: array of arrays: element %d is a %s", i, e.Type)
			}
		}
		return Value{TypeArray, x}, nil
	}
	return Value{}, fmt.Errorf("gguf: no GGUF value type for Go type %T", x)
}

// Any returns the value's content as one of the Go types listed on Value.
func (v Value) Any() any { return v.v }

// Elem returns the element type of an array value (TypeArray for an array
// of arrays); for a scalar it returns v.Type.
func (v Value) Elem() ValueType {
	switch v.v.(type) {
	case []uint8:
		return TypeUint8
	case []int8:
		return TypeInt8
	case []uint16:
		return TypeUint16
	case []int16:
		return TypeInt16
	case []uint32:
		return TypeUint32
	case []int32:
		return TypeInt32
	case []float32:
		return TypeFloat32
	case []bool:
		return TypeBool
	case []string:
		return TypeString
	case []uint64:
		return TypeUint64
	case []int64:
		return TypeInt64
	case []float64:
		return TypeFloat64
	case []Value:
		return TypeArray
	}
	return v.Type
}

// Len returns the number of elements of an array value, 0 for a scalar.
func (v Value) Len() int {
	switch a := v.v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// AsString returns a string value.
func (v Value) AsString() (string, bool) { s, ok := v.v.(string); return s, ok }

// AsBool returns a bool value.
func (v Value) AsBool() (bool, bool) { b, ok := v.v.(bool); return b, ok }

// AsUint returns an integer value of any integer type that is not negative.
func (v Value) AsUint() (uint64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	if i, ok := v.AsInt(); ok && i >= 0 {
		return uint64(i), true
	}
	return 0, false
}

// AsInt returns an integer value of any integer type that fits in an int64.
func (v Value) AsInt() (int64, bool) {
	switch x := v.v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= 1<<63-1 {
			return int64(x), true
		}
	}
	return 0, false
}

// AsFloat returns a float32 or float64 value as float64.
func (v Value) AsFloat() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// AsStrings returns an array of strings.
func (v Value) AsStrings() ([]string, bool) { a, ok := v.v.([]string); return a, ok }

// AsFloat32s returns an array of float32.
func (v Value) AsFloat32s() ([]float32, bool) { a, ok := v.v.([]float32); return a, ok }

// AsInt32s returns an array of int32.
func (v Value) AsInt32s() ([]int32, bool) { a, ok := v.v.([]int32); return a, ok }

// String formats the value for display; arrays longer than 8 elements are
// abbreviated to their type and length.
func (v Value) String() string {
	if v.Type != TypeArray {
		if s, ok := v.v.(string); ok {
			return fmt.Sprintf("%q", s)
		}
		return fmt.Sprint(v.v)
	}
	n := v.Len()
	if n > 8 {
		return fmt.Sprintf("[%d × %s]", n, v.Elem())
	}
	if vs, ok := v.v.([]Value); ok {
		parts := make([]string, len(vs))
		for i, e := range vs {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	if ss, ok := v.v.([]string); ok {
		return fmt.Sprintf("%q", ss)
	}
	return fmt.Sprint(v.v)
}
