package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/recipes"
	"github.com/herd-llm/herd/road"
	"github.com/spf13/cobra"
)

func recipeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipe list | show NAME | run NAME [FLAG=VALUE | STEP.FLAG=VALUE ...]",
		Short: "the recipe book: each LLaMA-road project (Alpaca, Vicuna, QLoRA, StackLLaMA, DPO, llama.cpp …) as herd commands",
		Long: `Every recipe says what the original project did (data, method,
hyperparameters, hardware, source) and what its scaled-down default does
here, as herd commands on the data herd quickstart ships (written to
OUT/data) or on your own: STEP.FLAG=VALUE overrides one step's flag
(sft.data=alpaca_data.json), FLAG=VALUE every step that sets FLAG.
--short runs the few-step variant the test suite runs; after the run the
recipe's claims (the loss falls, the margin rises …) are checked against
the metrics the steps wrote.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "the recipes, one line each", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := recipes.All()
			if err != nil {
				return err
			}
			for _, r := range all {
				fmt.Fprintf(cmd.OutOrStdout(), "%-14s %-12s %s\n", r.Name, r.Stage, r.Summary)
			}
			return nil
		},
	}, &cobra.Command{
		Use: "show NAME", Short: "a recipe and the commands it runs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipes.Get(args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), recipes.Show(r))
			return nil
		},
	}, recipeRunCmd())
	return cmd
}

func recipeRunCmd() *cobra.Command {
	var out string
	var short bool
	cmd := &cobra.Command{
		Use:   "run NAME [FLAG=VALUE | STEP.FLAG=VALUE ...] [-o DIR] [--short]",
		Short: "run a recipe's commands and check its claims",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipes.Get(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = "recipe-" + r.Name
			}
			plan, err := recipes.Plan(r, out, short, args[1:])
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			if _, err := road.WriteData(filepath.Join(out, "data"), "", nil, errw); err != nil {
				return err
			}
			for i, in := range plan {
				fmt.Fprintf(errw, "\n== recipe %s %d/%d: %s\n", r.Name, i+1, len(plan), in)
				if err := os.MkdirAll(in.Dir, 0o755); err != nil {
					return err
				}
				root := newRoot()
				root.SetArgs(in.Args)
				root.SetOut(cmd.OutOrStdout())
				root.SetErr(errw)
				if err := root.ExecuteContext(cmd.Context()); err != nil {
					return fmt.Errorf("recipe %s step %s: %w", r.Name, in.ID, err)
				}
			}
			held, err := recipes.Check(r, out)
			for _, h := range held {
				fmt.Fprintf(errw, "claim held: %s\n", h)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory (default recipe-NAME)")
	cmd.Flags().BoolVar(&short, "short", false, "the few-step variant the test suite runs")
	return cmd
}
