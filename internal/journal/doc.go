// Package journal runs the units of work of a pipeline that talks to a
// model endpoint (synth's data pipelines, the judge) and writes what they
// keep: an append-only JSON Lines output with one stable id per item and a
// journal beside it, units run concurrently and written in a fixed order,
// so a run stopped at any point continues with Resume to the file an
// uninterrupted run writes, and its report (kept, drops by reason, tokens)
// covers every run that made the file.
package journal
