// Package delta is herd's delta format: a fine-tuned model shipped as the
// difference from its base, as Alpaca and Vicuna shipped their weights. A
// delta is a GGUF file holding the target's metadata and, for every tensor
// the base has in the same dtype and shape, the target's bytes XOR the
// base's (useless without the base, exact with it); other tensors (a
// resized vocabulary, say) are stored whole. herd.delta.base_sha256 and
// herd.delta.target_sha256 are SHA-256 checksums of the base's and the
// target's tensors (name, dtype, dims and bytes, in file order), so that a
// wrong base or a damaged delta is caught. Both directions go tensor by
// tensor through a scratch file beside the output, so memory holds one
// tensor at a time.
package delta

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/internal/fileio"
)

// Keys of a delta file (the target's own metadata is carried too).
const (
	VersionKey = "herd.delta.version"
	BaseKey    = "herd.delta.base_sha256"
	TargetKey  = "herd.delta.target_sha256"
	XORKey     = "herd.delta.xor"
)

// tensorsHash is the SHA-256 of every tensor's name, dtype, dims and bytes,
// in file order.
func tensorsHash(f *gguf.File) string {
	h := sha256.New()
	for _, t := range f.Tensors {
		hashTensor(h, t.Name, uint32(t.DType), t.Dims, t.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashTensor(h hash.Hash, name string, dt uint32, dims []uint64, data []byte) {
	fmt.Fprintf(h, "%s\x00%d\x00%v\x00", name, dt, dims)
	h.Write(data)
}

// stage holds computed tensors in a scratch file, so that only one is in
// memory at a time; views maps the file for the GGUF writer to read.
type stage struct {
	f     *os.File
	spans [][2]int64
	size  int64
}

func newStage(out string) (*stage, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".stage*")
	if err != nil {
		return nil, err
	}
	return &stage{f: f}, nil
}

// add appends b and returns its index.
func (s *stage) add(b []byte) (int, error) {
	if _, err := s.f.Write(b); err != nil {
		return 0, err
	}
	s.spans = append(s.spans, [2]int64{s.size, s.size + int64(len(b))})
	s.size += int64(len(b))
	return len(s.spans) - 1, nil
}

// views maps the staged bytes; release unmaps and removes the file.
func (s *stage) views() ([][]byte, func(), error) {
	name := s.f.Name()
	if err := s.f.Close(); err != nil {
		os.Remove(name)
		return nil, nil, err
	}
	b, unmap, err := fileio.Map(name)
	if err != nil {
		os.Remove(name)
		return nil, nil, err
	}
	vs := make([][]byte, len(s.spans))
	for i, sp := range s.spans {
		vs[i] = b[sp[0]:sp[1]:sp[1]]
	}
	return vs, func() { unmap(); os.Remove(name) }, nil
}

// discard removes the scratch file.
func (s *stage) discard() { s.f.Close(); os.Remove(s.f.Name()) }

func xorBytes(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] ^ b[i]
	}
	return out
}

// pending is a tensor for the writer: a view of an input, or staged.
type pending struct {
	t      *gguf.TensorInfo
	staged int // index in the stage, -1 for t.Data itself
}

// write adds the tensors and metadata to a writer and writes out.
func writeStaged(out string, kv []gguf.KV, ts []pending, st *stage) error {
	views, release, err := st.views()
	if err != nil {
		return err
	}
	defer release()
	w := gguf.NewWriter()
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			return err
		}
	}
	for _, p := range ts {
		data := p.t.Data
		if p.staged >= 0 {
			data = views[p.staged]
		}
		if err := w.AddTensor(p.t.Name, p.t.DType, p.t.Dims, data); err != nil {
			return err
		}
	}
	return w.WriteFile(out)
}

// Make writes to out the delta from the GGUF file at basePath to the one
// at targetPath: the target's metadata, its tensors XOR the base's where
// the base has one of the same name, dtype and shape, the others whole,
// and the checksums of both files' tensors. It returns how many tensors
// are stored against the base and how many whole.
func Make(basePath, targetPath, out string) (xoredN, whole int, err error) {
	base, err := gguf.Open(basePath)
	if err != nil {
		return 0, 0, err
	}
	defer base.Close()
	tgt, err := gguf.Open(targetPath)
	if err != nil {
		return 0, 0, err
	}
	defer tgt.Close()
	st, err := newStage(out)
	if err != nil {
		return 0, 0, err
	}
	var ts []pending
	var xored []string
	th := sha256.New()
	for i := range tgt.Tensors {
		t := &tgt.Tensors[i]
		hashTensor(th, t.Name, uint32(t.DType), t.Dims, t.Data)
		p := pending{t: t, staged: -1}
		if bt, ok := base.Tensor(t.Name); ok && bt.DType == t.DType && slices.Equal(bt.Dims, t.Dims) {
			if p.staged, err = st.add(xorBytes(t.Data, bt.Data)); err != nil {
				st.discard()
				return 0, 0, err
			}
			xored = append(xored, t.Name)
		}
		ts = append(ts, p)
	}
	kv := slices.Clone(tgt.KV)
	for _, e := range []struct {
		k string
		v any
	}{{VersionKey, uint32(1)}, {BaseKey, tensorsHash(base)}, {TargetKey, hex.EncodeToString(th.Sum(nil))}, {XORKey, xored}} {
		v, err := gguf.ValueOf(e.v)
		if err != nil {
			st.discard()
			return 0, 0, err
		}
		kv = append(kv, gguf.KV{Key: e.k, Value: v})
	}
	if len(xored) == 0 {
		kv = kv[:len(kv)-1] // an empty array cannot say its type; no key means none
	}
	if err := writeStaged(out, kv, ts, st); err != nil {
		return 0, 0, err
	}
	return len(xored), len(ts) - len(xored), nil
}

// Apply rebuilds at out the target of the delta at deltaPath from the base
// at basePath, verifying both checksums first and last: a wrong base or a
// damaged delta is an error and nothing is written. It returns how many
// tensors were rebuilt against the base.
func Apply(basePath, deltaPath, out string) (rebuilt int, err error) {
	base, err := gguf.Open(basePath)
	if err != nil {
		return 0, err
	}
	defer base.Close()
	d, err := gguf.Open(deltaPath)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if v, ok := d.GetUint(VersionKey); !ok || v != 1 {
		return 0, fmt.Errorf("%s: not a herd delta (no %s = 1)", deltaPath, VersionKey)
	}
	wantBase, _ := d.GetString(BaseKey)
	wantTarget, _ := d.GetString(TargetKey)
	if got := tensorsHash(base); got != wantBase {
		return 0, fmt.Errorf("%s is not the base this delta was made against (tensor checksum %s…, the delta wants %s…)", basePath, got[:12], wantBase[:min(12, len(wantBase))])
	}
	xored := map[string]bool{}
	if names, ok := d.GetStrings(XORKey); ok {
		for _, n := range names {
			xored[n] = true
		}
	}
	st, err := newStage(out)
	if err != nil {
		return 0, err
	}
	th := sha256.New()
	var ts []pending
	for i := range d.Tensors {
		t := &d.Tensors[i]
		p := pending{t: t, staged: -1}
		data := t.Data
		if xored[t.Name] {
			bt, ok := base.Tensor(t.Name)
			if !ok || bt.DType != t.DType || !slices.Equal(bt.Dims, t.Dims) {
				st.discard()
				return 0, fmt.Errorf("%s: tensor %s of the delta has no match in the base", deltaPath, t.Name)
			}
			data = xorBytes(t.Data, bt.Data)
			if p.staged, err = st.add(data); err != nil {
				st.discard()
				return 0, err
			}
		}
		hashTensor(th, t.Name, uint32(t.DType), t.Dims, data)
		ts = append(ts, p)
	}
	if got := hex.EncodeToString(th.Sum(nil)); got != wantTarget {
		st.discard()
		return 0, fmt.Errorf("%s: the rebuilt model's checksum %s… is not the target's %s…: the delta is damaged; nothing written", deltaPath, got[:12], wantTarget[:min(12, len(wantTarget))])
	}
	var kv []gguf.KV
	for _, e := range d.KV {
		if !strings.HasPrefix(e.Key, "herd.delta.") {
			kv = append(kv, e)
		}
	}
	if err := writeStaged(out, kv, ts, st); err != nil {
		return 0, err
	}
	return len(xored), nil
}
