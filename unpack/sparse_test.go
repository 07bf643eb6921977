package unpack

import (
	"errors"
	"strings"
	"testing"
)

func mapBlocks(text string) []byte {
	b := []byte(text)
	return append(b, make([]byte, -len(b)&511)...)
}

// TestParseSparse: hostile sparse maps are refused from their bytes alone.
func TestParseSparse(t *testing.T) {
	cases := []struct {
		name           string
		text           string
		realsize, data int64
		ok             bool
	}{
		{"one segment and the end", "2\n4096\n10\n8192\n0\n", 8192, 10, true},
		{"no data at all", "1\n100\n0\n", 100, 0, true},
		{"empty map", "0\n", 100, 0, true},
		{"overlapping", "2\n0\n100\n50\n100\n", 1000, 200, false},
		{"out of order", "2\n500\n10\n0\n10\n", 1000, 20, false},
		{"beyond realsize", "1\n990\n20\n", 1000, 20, false},
		{"offset past realsize", "1\n2000\n0\n", 1000, 0, false},
		{"length overflows", "1\n10\n9223372036854775807\n", 1000, 0, false},
		{"absurd realsize", "0\n", 1 << 60, 0, false},
		{"negative realsize", "0\n", -1, 0, false},
		{"absurd segment count", "99999999\n", 1000, 0, false},
		{"negative number", "1\n-5\n10\n", 1000, 10, false},
		{"not decimal", "1\n0x10\n10\n", 1000, 10, false},
		{"number too long", "1\n" + strings.Repeat("0", 30) + "1\n1\n", 1000, 1, false},
		{"fewer numbers than announced", "2\n0\n10\n", 1000, 10, false},
		{"more than announced", "1\n0\n10\n20\n10\n", 1000, 10, false},
		{"data size disagrees", "1\n0\n10\n", 1000, 11, false},
		{"empty line", "1\n\n10\n", 1000, 10, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp, err := parseSparse(mapBlocks(c.text), c.realsize, c.data)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				if sp.data != c.data || sp.realsize != c.realsize {
					t.Errorf("got %+v", sp)
				}
				return
			}
			if !errors.Is(err, ErrSparseMap) {
				t.Fatalf("error %v, want ErrSparseMap", err)
			}
		})
	}
	t.Run("map not whole blocks", func(t *testing.T) {
		if _, err := parseSparse([]byte("0\n"), 10, 0); !errors.Is(err, ErrSparseMap) {
			t.Fatalf("error %v", err)
		}
	})
}
