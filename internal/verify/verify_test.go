package verify

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func digest(s string) v1.Hash {
	h := sha256.New()
	h.Write([]byte(s))
	return Sum(h)
}

func TestReader(t *testing.T) {
	good := digest("hello")
	cases := []struct {
		name string
		data string
		want v1.Hash
		size int64
		err  error // nil: reads cleanly
		bad  bool  // some other error
	}{
		{"exact", "hello", good, 5, nil, false},
		{"unknown size", "hello", good, UnknownSize, nil, false},
		{"other bytes", "hellp", good, 5, ErrDigestMismatch, false},
		{"other bytes, unknown size", "hellp", good, UnknownSize, ErrDigestMismatch, false},
		{"short", "hell", good, 5, ErrSizeMismatch, false},
		{"long", "hello!", good, 5, ErrSizeMismatch, false},
		{"negative size", "hello", good, -7, nil, true},
		{"not sha256", "hello", v1.Hash{Algorithm: "md5", Hex: good.Hex}, 5, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := io.ReadAll(Reader(io.NopCloser(strings.NewReader(tc.data)), tc.want, tc.size))
			switch {
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
			case tc.bad:
				if err == nil {
					t.Fatal("no error")
				}
			case err != nil:
				t.Fatal(err)
			}
		})
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "blob")
	if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := File(p, digest("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if err := File(p, digest("hellp"), 5); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("wrong digest: %v", err)
	}
	if err := File(p, digest("hello"), 6); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("wrong size: %v", err)
	}
	if err := os.Symlink(p, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := File(filepath.Join(dir, "link"), digest("hello"), 5); err == nil {
		t.Fatal("a symlink was trusted")
	}
	b, err := ReadAll(io.NopCloser(strings.NewReader("hello")), digest("hello"), 5)
	if err != nil || string(b) != "hello" {
		t.Fatalf("ReadAll: %q %v", b, err)
	}
}
