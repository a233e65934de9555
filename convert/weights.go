package convert

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/herd-llm/herd/format/pytorch"
	"github.com/herd-llm/herd/format/safetensors"
)

// srcTensor is a tensor of a weight file under its name in that file.
type srcTensor struct {
	name  string
	file  string // the path of the file holding it, for errors
	dtype safetensors.DType
	shape []int64
	read  func() ([]byte, error) // row-major little-endian bytes of dtype
}

// weights are the tensors of one checkpoint, by their names in it.
type weights struct {
	byName  map[string]*srcTensor
	order   []string
	closers []io.Closer
}

func (w *weights) add(t *srcTensor) error {
	if o, dup := w.byName[t.name]; dup {
		return fmt.Errorf("tensor %s is in both %s and %s", t.name, o.file, t.file)
	}
	w.byName[t.name] = t
	w.order = append(w.order, t.name)
	return nil
}

func (w *weights) close() {
	for _, c := range w.closers {
		c.Close()
	}
	w.closers = nil
}

// openSafetensors adds the tensors of one safetensors file.
func (w *weights) openSafetensors(path string) error {
	ix, err := safetensors.OpenIndex(path)
	if err != nil {
		return err
	}
	w.closers = append(w.closers, ix)
	for i := range ix.Entries {
		e := &ix.Entries[i]
		if err := w.add(&srcTensor{name: e.Name, file: path, dtype: e.DType, shape: e.Shape,
			read: func() ([]byte, error) { return ix.Read(e) }}); err != nil {
			return err
		}
	}
	return nil
}

// openPyTorch adds the tensors of one torch.save archive.
func (w *weights) openPyTorch(path string) error {
	pf, err := pytorch.Open(path)
	if err != nil {
		return err
	}
	w.closers = append(w.closers, pf)
	for i := range pf.Tensors {
		t := &pf.Tensors[i]
		if err := w.add(&srcTensor{name: t.Name, file: path, dtype: t.DType, shape: t.Shape,
			read: func() ([]byte, error) { return pf.Read(t) }}); err != nil {
			return err
		}
	}
	return nil
}

// shardIndex is model.safetensors.index.json / pytorch_model.bin.index.json.
type shardIndex struct {
	WeightMap map[string]string `json:"weight_map"`
}

// openHFWeights opens the weights of a Hugging Face model directory:
// model.safetensors, or the shards a model.safetensors.index.json names,
// or the same for pytorch_model.bin. Every tensor the index names must be
// in the shard it names.
func openHFWeights(dir string) (*weights, error) {
	w := &weights{byName: map[string]*srcTensor{}}
	ok, err := w.tryLayout(dir, "model.safetensors", w.openSafetensors)
	if err == nil && !ok {
		ok, err = w.tryLayout(dir, "pytorch_model.bin", w.openPyTorch)
	}
	if err != nil {
		w.close()
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json", dir)
	}
	return w, nil
}

// tryLayout opens dir/single, or the shards of dir/single.index.json; it
// reports whether either was there.
func (w *weights) tryLayout(dir, single string, open func(string) error) (bool, error) {
	if p := filepath.Join(dir, single); fileExists(p) {
		return true, open(p)
	}
	ipath := filepath.Join(dir, single+".index.json")
	data, err := os.ReadFile(ipath)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	var ix shardIndex
	if err := json.Unmarshal(data, &ix); err != nil {
		return true, fmt.Errorf("%s: %w", ipath, err)
	}
	if len(ix.WeightMap) == 0 {
		return true, fmt.Errorf("%s: weight_map is empty", ipath)
	}
	shards := map[string]bool{}
	for name, shard := range ix.WeightMap {
		if filepath.Base(shard) != shard || shard == "" {
			return true, fmt.Errorf("%s: tensor %s: shard %q is not a file name in the directory", ipath, name, shard)
		}
		shards[shard] = true
	}
	names := make([]string, 0, len(shards))
	for s := range shards {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		p := filepath.Join(dir, s)
		if !fileExists(p) {
			return true, fmt.Errorf("%s: shard %s (tensor %s, …) is missing", ipath, p, firstTensorIn(ix.WeightMap, s))
		}
		if err := open(p); err != nil {
			return true, err
		}
	}
	for name, shard := range ix.WeightMap {
		t, ok := w.byName[name]
		if !ok {
			return true, fmt.Errorf("%s: tensor %s is not in its shard %s", ipath, name, shard)
		}
		if filepath.Base(t.file) != shard {
			return true, fmt.Errorf("%s: tensor %s is in %s, the index says %s", ipath, name, t.file, shard)
		}
	}
	return true, nil
}

func firstTensorIn(m map[string]string, shard string) string {
	var names []string
	for n, s := range m {
		if s == shard {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names[0]
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
