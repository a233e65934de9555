package dist

import "testing"

func TestSingle(t *testing.T) {
	var c Single
	if c.Rank() != 0 || c.Size() != 1 || c.Barrier() != nil {
		t.Fatal("Single is not one rank")
	}
	buf := []float32{1, 2, 3}
	if err := c.AllReduceF32(buf); err != nil || buf[2] != 3 {
		t.Fatalf("all-reduce: %v %v", buf, err)
	}
	if req, err := c.IAllReduceF32(buf); err != nil || req.Wait() != nil || buf[2] != 3 {
		t.Fatalf("non-blocking all-reduce: %v %v", buf, err)
	}
	recv := make([]float32, 3)
	if err := c.ReduceScatterF32(buf, recv); err != nil || recv[1] != 2 {
		t.Fatalf("reduce-scatter: %v %v", recv, err)
	}
	if err := c.AllGatherF32(buf, make([]float32, 2)); err == nil {
		t.Error("all-gather into a short buffer accepted")
	}
	msg := []byte("to myself")
	in, err := c.AllToAll([][]byte{msg})
	if err != nil || len(in) != 1 || string(in[0]) != "to myself" {
		t.Fatalf("all-to-all: %q %v", in, err)
	}
	if msg[0] = 'X'; in[0][0] == 'X' {
		t.Error("all-to-all returned the sender's buffer, not a copy")
	}
	if _, err := c.AllToAll(nil); err == nil {
		t.Error("all-to-all of no messages accepted")
	}
	if err := c.Bcast([]byte{1}, 1); err == nil {
		t.Error("broadcast from root 1 of 1 accepted")
	}
}
