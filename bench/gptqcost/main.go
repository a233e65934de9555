// Command gptqcost measures the three costs of herd gptq in CPU seconds (so
// the figures hold on a loaded machine) and extrapolates a whole model's
// GPTQ time from them:
//
//   - the Hessian, H += XᵀX over the calibration tokens: a GEMM of
//     2·tokens·d_in² flops per distinct input (q/k/v share one, gate/up one);
//   - the Cholesky factor of H⁻¹, ~d_in³, once per matrix;
//   - the column loop with its lazy block updates, ~d_out·d_in² per matrix;
//
// plus the two passes of the calibration set through each block (inputs
// before and outputs after quantizing it), 2·tokens·params flops each, taken
// at the Hessian GEMM's rate. The last two are separated by timing Quantize
// on n×n and (n/8)×n matrices. bench/gptq_table.sh's BENCHMARKS.md figures:
//
//	go run ./bench/gptqcost -n 2048 -t 1
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/quant/gptq"
	"github.com/herd-llm/herd/tensor"
)

func cpu() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type shape struct {
	name             string
	dim, ffn, layers int
	heads, kvHeads   int
}

func main() {
	n := flag.Int("n", 2048, "matrix width of the measurement")
	threads := flag.Int("t", 1, "threads")
	tokens := flag.Int("tokens", 128*256, "calibration tokens of the extrapolation")
	flag.Parse()
	kernels.SetThreads(*threads)
	if *n%256 != 0 || *n < 512 {
		fmt.Fprintln(os.Stderr, "gptqcost: -n must be a multiple of 256, at least 512")
		os.Exit(1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	nt := 4 * *n
	x := make([]float32, nt**n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	hs := gptq.NewHessian(*n)
	t0 := cpu()
	hs.Add(x, nt)
	hess := (cpu() - t0) / (float64(nt) * float64(*n) * float64(*n)) // s per token·d_in²
	quant := func(rows int) float64 {
		w := make([]float32, rows**n)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		t := cpu()
		if _, err := gptq.Quantize(w, rows, *n, hs.Matrix(), gptq.Block{Type: tensor.Q4_0}, gptq.Options{Damp: 0.01, ActOrder: true}); err != nil {
			fmt.Fprintln(os.Stderr, "gptqcost:", err)
			os.Exit(1)
		}
		return cpu() - t
	}
	small, full := *n/8, *n
	ts, tf := quant(small), quant(full)
	nf := float64(*n)
	upd := (tf - ts) / (float64(full-small) * nf * nf) // s per d_out·d_in²
	inv := (ts - upd*float64(small)*nf*nf) / (nf * nf * nf)
	gflops := 2 / hess / 1e9
	fmt.Printf("measured at n=%d, %d thread(s), CPU time: Hessian %.3g s per token·d² (%.1f GFLOP/s), Cholesky of H⁻¹ %.3g s per d³, column loop %.3g s per d_out·d²\n",
		*n, *threads, hess, gflops, inv, upd)
	fmt.Printf("  %d×%d Quantize %.2f s, %d×%d %.2f s\n", full, *n, tf, small, *n, ts)
	for _, s := range []shape{
		{"d256 f768 ×6 (the pretrained model)", 256, 768, 6, 8, 8},
		{"TinyLlama-1.1B", 2048, 5632, 22, 32, 4},
		{"LLaMA-7B", 4096, 11008, 32, 32, 32},
	} {
		d, f, N := float64(s.dim), float64(s.ffn), float64(*tokens)
		kvd := d * float64(s.kvHeads) / float64(s.heads)
		// per layer: inputs attn (q,k,v), o, ffn (gate, up), down
		h := hess * N * (3*d*d + f*f)
		c := inv * (6*d*d*d + f*f*f) // one factor per matrix: q, k, v, o, gate, up (d_in d) and down (d_in ffn)
		u := upd * ((2*d+2*kvd)*d*d + 2*f*d*d + d*f*f)
		params := 2*d*d + 2*kvd*d + 3*d*f
		fw := 2 * (2 * N * params) / (gflops * 1e9)
		per := h + c + u + fw
		fmt.Printf("%s, %d calibration tokens: per layer Hessian %.0f s, H⁻¹ factors %.0f s, column loop %.0f s, forward passes %.0f s = %.0f s; × %d layers = %.2f h of one thread's CPU time\n",
			s.name, *tokens, h, c, u, fw, per, s.layers, per*float64(s.layers)/3600)
	}
}
