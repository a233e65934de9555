package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/tokenizer"
)

// Preparation across ranks (PrepareOptions.Comm of several): the output is
// byte for byte the one process's (shards, tokenizer file and manifest,
// whose stats.seconds and stats.mb_per_sec are timings and differ as they
// do between any two runs).
//
//   - Each source's files are cut into contiguous runs of about equal
//     bytes, one a rank (a source of one file is read by one rank): the
//     one process's document order is the order (source, rank, the rank's
//     document), which every document's position encodes.
//   - Each rank reads, cleans, hashes and tokenizes its files, keeping
//     every clean document in a spool (the expensive work, in parallel).
//   - Exact deduplication: the document hashes are partitioned, hash mod
//     ranks; every rank sends each hash with its position to the hash's
//     owner (all-to-all), the owner keeps the first position of each hash
//     and answers, per hash it received, whether it is the first. That is
//     the one process's rule (a document is dropped when an earlier one,
//     in any source, has its hash), with each rank holding 1/ranks of the
//     hashes.
//   - Near deduplication (MinHash LSH), when asked for: the signatures are
//     computed on the ranks; the decisions, which depend on the order
//     (a document is compared with every earlier kept one), are taken on
//     rank 0 in the global order from the gathered signatures of the
//     exact survivors, exactly as the one process takes them (rank 0 holds
//     every signature, as the one process's index does).
//   - Rank 0 gathers the counts and the kept documents' tokens (in
//     rounds of bounded size, each rank's block written at its offset),
//     draws the validation split in the global order and packs the shards
//     as the one process does; it alone writes dir. Any rank's failure
//     stops every rank with an error.

// candidates are one rank's clean documents of one source, in order: the
// hashes of each (for the deduplication across ranks) and its length.
type candidates struct {
	exact, near bool // hash for exact, sign for near deduplication
	keys        [][16]byte
	sigs        [][]uint32
	bytes       []int64
}

func (c *candidates) add(d docOut) {
	c.keys = append(c.keys, d.key)
	if c.near {
		c.sigs = append(c.sigs, d.sig)
	}
	c.bytes = append(c.bytes, int64(d.bytes))
}

// rankSource is a rank's part of one source.
type rankSource struct {
	sp   *spool
	st   *SourceStats
	cand *candidates
	kept []bool // per candidate, after deduplication
}

// prepareRanks is Prepare on several ranks.
func (r *Recipe) prepareRanks(tok tokenizer.Tokenizer, dir string, opt PrepareOptions) (*Manifest, error) {
	comm := opt.Comm
	root := comm.Rank() == 0
	log := opt.Log
	if log == nil || !root {
		log = io.Discard
	}
	if err := agree(comm, "checking the recipe", r.check()); err != nil {
		return nil, err
	}
	if r.MaxEpochs == 0 {
		r.MaxEpochs = 1
	}
	if r.ShardTokens == 0 {
		r.ShardTokens = 100_000_000
	}
	workers := r.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	perms, shingle := r.Clean.Perms, r.Clean.Shingle
	if perms == 0 {
		perms = defaultPerms
	}
	if shingle == 0 {
		shingle = defaultShingle
	}
	start := time.Now()
	// every rank lists every source's files; they must agree with rank 0
	files := make([][]string, len(r.Sources))
	sizes := make([][]int64, len(r.Sources))
	var listErr error
	digest := sha256.New()
	rj, _ := json.Marshal(r)
	digest.Write(rj)
	fmt.Fprintf(digest, "tokenizer %d %d %d\n", tok.VocabSize(), tok.BOS(), tok.EOS())
	for i := range r.Sources {
		if files[i], listErr = r.Sources[i].files(); listErr != nil {
			break
		}
		for _, f := range files[i] {
			st, err := os.Stat(f)
			if err != nil {
				listErr = err
				break
			}
			sizes[i] = append(sizes[i], st.Size())
			fmt.Fprintf(digest, "%d %q %d\n", i, f, st.Size())
		}
	}
	if err := agree(comm, "listing the inputs", listErr); err != nil {
		return nil, err
	}
	if err := sameAsRoot(comm, "the recipe, the tokenizer or the input files", digest.Sum(nil)); err != nil {
		return nil, err
	}
	// rank 0's spools live in dir, the others' in a directory of their own
	var spoolDir string
	var err error
	if root {
		err = os.MkdirAll(dir, 0o755)
		spoolDir = dir
	} else if spoolDir, err = os.MkdirTemp("", "herd-prepare-"); err == nil {
		defer os.RemoveAll(spoolDir)
	}
	if err := agree(comm, "creating "+dir, err); err != nil {
		return nil, err
	}
	parts := make([]*rankSource, len(r.Sources))
	defer func() {
		for _, p := range parts {
			if p != nil && p.sp != nil {
				p.sp.remove()
			}
		}
	}()
	for i := range r.Sources {
		lo, hi := cutFiles(sizes[i], comm.Size(), comm.Rank())
		cand := &candidates{exact: !r.Clean.NoDedup, near: r.Clean.NearDedup > 0}
		sp, st, rerr := r.readSource(&r.Sources[i], i, files[i][lo:hi], tok, spoolDir, workers, nil, nil, cand, perms, shingle)
		parts[i] = &rankSource{sp: sp, st: st, cand: cand}
		if rerr != nil {
			err = rerr
			break
		}
		parts[i].kept = make([]bool, len(cand.bytes))
		for j := range parts[i].kept {
			parts[i].kept[j] = true
		}
	}
	if err := agree(comm, "reading the inputs", err); err != nil {
		return nil, err
	}
	if !r.Clean.NoDedup {
		if err := exactAcrossRanks(comm, parts); err != nil {
			return nil, err
		}
	}
	if r.Clean.NearDedup > 0 {
		if err := nearAcrossRanks(comm, parts, newLSH(perms, r.Clean.NearDedup), perms); err != nil {
			return nil, err
		}
	}
	stats, spools, err := r.gatherRanks(comm, parts, spoolDir)
	if err := agree(comm, "gathering the documents on rank 0", err); err != nil {
		return nil, err
	}
	var man *Manifest
	if root {
		for i, src := range r.Sources {
			st := stats.Sources[i]
			fmt.Fprintf(log, "%s: %d files, %d documents read, %d kept (%d tokens)\n", src.Name, st.Files, st.Docs, st.Kept, st.Tokens)
		}
		man, err = r.finish(tok, dir, spools, stats, start, log)
		for _, sp := range spools {
			sp.remove()
		}
	}
	if err := agree(comm, "writing "+dir, err); err != nil {
		return nil, err
	}
	// every rank returns rank 0's manifest
	var b []byte
	if root {
		b, _ = json.Marshal(man)
	}
	size := binary.LittleEndian.AppendUint64(nil, uint64(len(b)))
	if err := comm.Bcast(size, 0); err != nil {
		return nil, err
	}
	if !root {
		b = make([]byte, binary.LittleEndian.Uint64(size))
	}
	if err := comm.Bcast(b, 0); err != nil {
		return nil, err
	}
	if !root {
		man = &Manifest{}
		if err := json.Unmarshal(b, man); err != nil {
			return nil, err
		}
	}
	return man, nil
}

// finish packs the spools and writes the manifest: Prepare's last part,
// and rank 0's after the ranks have read.
func (r *Recipe) finish(tok tokenizer.Tokenizer, dir string, spools []*spool, stats *Stats, start time.Time, log io.Writer) (*Manifest, error) {
	man, err := r.pack(tok, dir, spools, log)
	if err != nil {
		return nil, err
	}
	if w := r.emptyVal(stats, man); w != "" {
		fmt.Fprintln(log, "warning: "+w)
		man.Warnings = append(man.Warnings, w)
	}
	stats.Seconds = time.Since(start).Seconds()
	stats.MBPerSec = float64(stats.RawBytes) / 1e6 / stats.Seconds
	man.Stats = stats
	rc := *r
	man.Recipe = &rc
	if err := WriteManifest(dir, man); err != nil {
		return nil, err
	}
	printStats(log, stats)
	return man, nil
}

// cutFiles is rank's contiguous run [lo, hi) of files of the given sizes
// cut into ranks runs of about equal bytes: rank q takes the files whose
// first byte lies in [q·total/ranks, (q+1)·total/ranks).
func cutFiles(sizes []int64, ranks, rank int) (lo, hi int) {
	var total int64
	for _, s := range sizes {
		total += s
	}
	first := func(q int) int { // the first file starting at or past q's share
		if q >= ranks {
			return len(sizes)
		}
		bound := int64(math.Ceil(float64(total) * float64(q) / float64(ranks)))
		var at int64
		for i, s := range sizes {
			if at >= bound && (q > 0 || i == 0) {
				return i
			}
			at += s
		}
		return len(sizes)
	}
	return first(rank), first(rank + 1)
}

// position is a document's place in the one process's order: source,
// rank, the rank's candidate index.
func position(src, rank, j int) uint64 { return uint64(src)<<48 | uint64(rank)<<32 | uint64(j) }

// exactAcrossRanks drops, on every rank, the candidates whose hash an
// earlier document has: hash owner = hash mod ranks, one all-to-all of
// (hash, position) to the owners and one of the owners' answers back.
func exactAcrossRanks(comm dist.Comm, parts []*rankSource) error {
	n := comm.Size()
	send := make([][]byte, n)
	type ref struct{ src, j int }
	sent := make([][]ref, n) // what went to each owner, in order
	for i, p := range parts {
		for j, k := range p.cand.keys {
			o := int(binary.LittleEndian.Uint64(k[:8]) % uint64(n))
			send[o] = append(send[o], k[:]...)
			send[o] = binary.LittleEndian.AppendUint64(send[o], position(i, comm.Rank(), j))
			sent[o] = append(sent[o], ref{i, j})
		}
	}
	recv, err := comm.AllToAll(send)
	if err != nil {
		return fmt.Errorf("exchange of the document hashes: %w", err)
	}
	const rec = 24
	first := map[[16]byte]uint64{}
	for _, b := range recv {
		for at := 0; at+rec <= len(b); at += rec {
			k := [16]byte(b[at : at+16])
			pos := binary.LittleEndian.Uint64(b[at+16:])
			if f, ok := first[k]; !ok || pos < f {
				first[k] = pos
			}
		}
	}
	answer := make([][]byte, n)
	for q, b := range recv {
		answer[q] = make([]byte, len(b)/rec)
		for e := range answer[q] {
			k := [16]byte(b[e*rec : e*rec+16])
			if first[k] == binary.LittleEndian.Uint64(b[e*rec+16:]) {
				answer[q][e] = 1
			}
		}
	}
	back, err := comm.AllToAll(answer)
	if err != nil {
		return fmt.Errorf("exchange of the deduplication answers: %w", err)
	}
	for o, refs := range sent {
		if len(back[o]) != len(refs) {
			return fmt.Errorf("rank %d answered %d of %d hashes", o, len(back[o]), len(refs))
		}
		for e, x := range refs {
			if back[o][e] == 0 {
				parts[x.src].kept[x.j] = false
				parts[x.src].st.Dropped[ReasonExactDup]++
			}
		}
	}
	return nil
}

// nearAcrossRanks gathers the exact survivors' signatures on rank 0,
// which runs them through near in the global order, and sends each rank
// its documents' verdicts.
func nearAcrossRanks(comm dist.Comm, parts []*rankSource, near *lsh, perms int) error {
	n := comm.Size()
	send := make([][]byte, n)
	var b []byte
	for _, p := range parts {
		var count uint64
		for j := range p.kept {
			if p.kept[j] {
				count++
			}
		}
		b = binary.LittleEndian.AppendUint64(b, count)
		for j, sig := range p.cand.sigs {
			if p.kept[j] {
				for _, v := range sig {
					b = binary.LittleEndian.AppendUint32(b, v)
				}
			}
		}
	}
	send[0] = b
	recv, err := comm.AllToAll(send)
	if err != nil {
		return fmt.Errorf("gathering the MinHash signatures: %w", err)
	}
	verdicts := make([][]byte, n)
	if comm.Rank() == 0 {
		at := make([]int, n)
		for range parts {
			for q := range n {
				bq := recv[q]
				if at[q]+8 > len(bq) {
					return fmt.Errorf("rank %d sent %d bytes of signatures", q, len(bq))
				}
				count := int(binary.LittleEndian.Uint64(bq[at[q]:]))
				at[q] += 8
				for range count {
					if at[q]+4*perms > len(bq) {
						return fmt.Errorf("rank %d sent %d bytes of signatures", q, len(bq))
					}
					sig := make([]uint32, perms)
					for k := range sig {
						sig[k] = binary.LittleEndian.Uint32(bq[at[q]+4*k:])
					}
					at[q] += 4 * perms
					verdicts[q] = append(verdicts[q], b2byte(near.add(sig)))
				}
			}
		}
	}
	back, err := comm.AllToAll(verdicts)
	if err != nil {
		return fmt.Errorf("sending the near-duplicate verdicts: %w", err)
	}
	v := back[0]
	e := 0
	for _, p := range parts {
		for j := range p.kept {
			if !p.kept[j] {
				continue
			}
			if e >= len(v) {
				return fmt.Errorf("rank 0 sent %d near-duplicate verdicts, fewer than this rank's documents", len(v))
			}
			if v[e] == 1 {
				p.kept[j] = false
				p.st.Dropped[ReasonNearDup]++
			}
			e++
		}
	}
	return nil
}

func b2byte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// rankReport is what a rank tells rank 0 of one source: its counts and
// its kept documents' lengths.
type rankReport struct {
	Stats SourceStats `json:"stats"`
	Lens  []int32     `json:"lens"`
}

// gatherRanks sums the ranks' counts and gathers the kept documents'
// tokens into one spool a source on rank 0, in the global order, with the
// validation split drawn there as the one process draws it. It returns
// nil spools on the other ranks.
func (r *Recipe) gatherRanks(comm dist.Comm, parts []*rankSource, spoolDir string) (*Stats, []*spool, error) {
	n, root := comm.Size(), comm.Rank() == 0
	reports := make([]rankReport, len(parts))
	for i, p := range parts {
		rep := &reports[i]
		rep.Stats = *p.st
		for j, keep := range p.kept {
			if keep {
				rep.Stats.Kept++
				rep.Stats.KeptBytes += p.cand.bytes[j]
				rep.Stats.Tokens += int64(p.sp.lens[j])
				rep.Lens = append(rep.Lens, p.sp.lens[j])
			}
		}
	}
	b, err := json.Marshal(reports)
	if err != nil {
		return nil, nil, err
	}
	send := make([][]byte, n)
	send[0] = b
	recv, err := comm.AllToAll(send)
	if err != nil {
		return nil, nil, fmt.Errorf("gathering the counts: %w", err)
	}
	all := make([][]rankReport, n)
	if root {
		for q := range n {
			if err := json.Unmarshal(recv[q], &all[q]); err != nil || len(all[q]) != len(parts) {
				return nil, nil, fmt.Errorf("rank %d's counts: %v", q, err)
			}
		}
	}
	// the tokens, a source at a time, in rounds of at most roundTokens
	// bytes a rank; rank 0 writes rank q's block after ranks < q's
	var spools []*spool
	stats := &Stats{}
	for i, p := range parts {
		if err := p.sp.open(); err != nil {
			return nil, nil, err
		}
		var sp *spool
		var base []int64 // per rank, the block's offset in bytes
		if root {
			f, err := os.CreateTemp(spoolDir, ".spool-*")
			if err != nil {
				return nil, nil, err
			}
			sp = &spool{path: f.Name(), f: f}
			spools = append(spools, sp)
			st := SourceStats{Name: r.Sources[i].Name, Dropped: map[string]int64{}}
			valRng := rand.New(rand.NewPCG(r.Seed, uint64(i)))
			c := &collector{r: r, src: &r.Sources[i], valRng: valRng}
			var off int64
			for q := range n {
				rep := all[q][i]
				base = append(base, off)
				addStats(&st, &rep.Stats)
				for _, l := range rep.Lens {
					sp.lens = append(sp.lens, l)
					sp.val = append(sp.val, c.valSplit())
					sp.total += int64(l)
					off += 4 * int64(l)
				}
			}
			stats.Sources = append(stats.Sources, st)
			stats.RawBytes += st.RawBytes
		}
		// this rank's kept tokens, document by document, sent in rounds
		offs := make([]int64, len(p.sp.lens)+1)
		for j, l := range p.sp.lens {
			offs[j+1] = offs[j] + 4*int64(l)
		}
		next, at := 0, make([]int64, n) // this rank's next candidate; bytes rank 0 has of each
		for {
			var chunk []byte
			for next < len(p.kept) && len(chunk) < roundTokens {
				if p.kept[next] {
					chunk = append(chunk, p.sp.data[offs[next]:offs[next+1]]...)
				}
				next++
			}
			active := []float64{b2f(len(chunk) > 0)} // how many ranks still send
			if err := comm.AllReduceF64(active); err != nil {
				return nil, nil, fmt.Errorf("gathering the tokens: %w", err)
			}
			if active[0] == 0 {
				break
			}
			send := make([][]byte, n)
			send[0] = chunk
			recv, err := comm.AllToAll(send)
			if err != nil {
				return nil, nil, fmt.Errorf("gathering the tokens: %w", err)
			}
			if root {
				for q, b := range recv {
					if _, err := sp.f.WriteAt(b, base[q]+at[q]); err != nil {
						return nil, nil, fmt.Errorf("%s: %w", sp.path, err)
					}
					at[q] += int64(len(b))
				}
			}
		}
		p.sp.remove()
		p.sp = nil
	}
	return stats, spools, nil
}

// roundTokens bounds the bytes of tokens a rank sends rank 0 in one
// round of gatherRanks.
var roundTokens = 64 << 20

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// addStats adds a rank's counts of a source into st.
func addStats(st, o *SourceStats) {
	st.Files += o.Files
	st.Docs += o.Docs
	st.Kept += o.Kept
	st.RawBytes += o.RawBytes
	st.KeptBytes += o.KeptBytes
	st.Tokens += o.Tokens
	st.NULDocs += o.NULDocs
	st.InvalidUTF8Docs += o.InvalidUTF8Docs
	for k, v := range o.Dropped {
		st.Dropped[k] += v
	}
}

// agree is err on this rank or, when another rank failed at the same
// point, an error saying so: every rank calls it with its own outcome of
// what, and either all go on or all stop.
func agree(comm dist.Comm, what string, err error) error {
	flag := []float64{0, 0}
	if err != nil {
		flag = []float64{1, float64(comm.Rank())}
	}
	if rerr := comm.AllReduceF64(flag); rerr != nil {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s: %w", what, rerr)
	}
	if err != nil {
		return fmt.Errorf("rank %d of %d: %w", comm.Rank(), comm.Size(), err)
	}
	if flag[0] > 0 {
		return fmt.Errorf("%s failed on another rank (rank %g when only one did; see its message): stopped", what, flag[1])
	}
	return nil
}

// sameAsRoot is an error on every rank when a rank's digest differs from
// rank 0's.
func sameAsRoot(comm dist.Comm, what string, digest []byte) error {
	root := slices.Clone(digest)
	if err := comm.Bcast(root, 0); err != nil {
		return fmt.Errorf("broadcast of %s: %w", what, err)
	}
	var err error
	if !bytes.Equal(root, digest) {
		err = fmt.Errorf("%s differ from rank 0's (every rank must read the same recipe and see the same files)", what)
	}
	return agree(comm, "the comparison of "+what, err)
}
