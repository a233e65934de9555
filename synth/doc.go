// Package synth makes instruction data with a teacher model behind an
// OpenAI-compatible endpoint (oai.Client): self-instruct as Alpaca ran it,
// Evol-Instruct (WizardLM), self-chat (Baize) and distillation (GPT4ALL,
// Koala), each writing an append-only JSON Lines file with one stable id per
// item and a journal beside it, so a run stopped at any point continues with
// Resume to the same file an uninterrupted run writes.
package synth
