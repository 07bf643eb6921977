package diff

import (
	"testing"
)

func TestWalkLess(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		want bool
	}{
		{"parent before child", "a", "a/b", true},
		{"child after parent", "a/b", "a", false},
		{"equal", "a/b", "a/b", false},
		{"a dir's subtree before a later sibling", "a/z", "a-b", true},
		{"siblings by raw bytes", "a-b", "a/z", false},
		{"deeper subtree before the next sibling", "a/b/c/d", "a/c", true},
		{"uppercase before lowercase", "Z", "a", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := walkLess(tc.a, tc.b); got != tc.want {
				t.Fatalf("walkLess(%q, %q) = %t", tc.a, tc.b, got)
			}
		})
	}
}
