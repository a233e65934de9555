package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/herd-llm/herd/serve"
	"github.com/spf13/cobra"
)

func loadtestCmd() *cobra.Command {
	var cfg serve.LoadConfig
	var clients string
	cmd := &cobra.Command{
		Use:   "loadtest --url URL --model NAME",
		Short: "load-test a running herd serve (or any OpenAI-compatible server) with concurrent streaming clients",
		Long: `Sends every prompt alone first (one client, temperature 0) to learn its
answer, then for each count in --clients runs that many concurrent clients,
each streaming --requests chat completions one after another, and checks that
every stream completes and every answer equals the one the prompt got alone.
Prints aggregate generated tokens/s and the 50th/99th percentile time to first
token. Exits with an error if any request failed or differed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var counts []int
			for _, f := range strings.Split(clients, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n <= 0 {
					return fmt.Errorf("--clients %q: want positive counts separated by commas", clients)
				}
				counts = append(counts, n)
			}
			cfg.Prompts = serve.DefaultPrompts
			base := cfg
			base.Clients, base.Requests = 1, len(cfg.Prompts)
			solo, err := serve.Load(cmd.Context(), base)
			if err != nil {
				return err
			}
			if solo.Errors > 0 {
				return fmt.Errorf("the prompts alone: %d errors: %s", solo.Errors, strings.Join(solo.FirstErrors, "; "))
			}
			cfg.Want = solo.Texts
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "clients\trequests\terrors\tmismatches\ttokens\tseconds\ttokens/s\tTTFT p50 ms\tTTFT p99 ms\t")
			bad := 0
			for _, n := range counts {
				c := cfg
				c.Clients = n
				r, err := serve.Load(cmd.Context(), c)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t\n", n, r.Requests, r.Errors, r.Mismatches, r.Tokens,
					r.Elapsed.Seconds(), r.TokensPerSecond(), float64(r.Percentile(50).Microseconds())/1000, float64(r.Percentile(99).Microseconds())/1000)
				bad += r.Errors + r.Mismatches
				for _, e := range r.FirstErrors {
					fmt.Fprintln(cmd.ErrOrStderr(), "  ", e)
				}
			}
			w.Flush()
			if bad > 0 {
				return fmt.Errorf("%d requests failed or differed from their answers alone", bad)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "server base URL")
	f.StringVar(&cfg.Model, "model", "stories260K", "model name")
	f.StringVar(&cfg.APIKey, "api-key", "", "bearer token")
	f.StringVar(&clients, "clients", "1,32", "concurrent client counts to run, separated by commas")
	f.IntVar(&cfg.Requests, "requests", 4, "requests per client")
	f.IntVar(&cfg.MaxTokens, "max-tokens", 64, "tokens per request")
	return cmd
}
