package judge_test

import (
	"fmt"

	"github.com/herd-llm/herd/judge"
)

// Scores are read from the judge's text however it writes them; a
// pairwise win needs both orders to agree.
func ExampleParseScore() {
	for _, s := range []string{"Rating: [[8]]", "I'd give it [6.5].", "Rating: 7/10", "Excellent!"} {
		v, ok := judge.ParseScore(s)
		fmt.Println(v, ok)
	}
	fmt.Println(judge.Combine("A", "B"), judge.Combine("A", "A"), judge.Combine("C", "C"))
	// Output:
	// 8 true
	// 6.5 true
	// 7 true
	// 0 false
	// win tie tie
}
