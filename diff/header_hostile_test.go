package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// TestHeaderLimits covers the upper-dir rows whose inputs a test cannot
// cheaply make on disk: a file over 8 GiB (U14) and device numbers above
// what seven octal digits hold (U16).
func TestHeaderLimits(t *testing.T) {
	t.Run("U14/size over 8 GiB uses a PAX size record", func(t *testing.T) {
		r := headerRules{seen: map[uint64]string{}}
		h, _ := r.headers(Change{Path: "big", Source: "/nonexistent", Info: Info{Mode: sIFREG | 0o644, Size: 8 << 30}}, nil)
		var b bytes.Buffer
		if err := tar.NewWriter(&b).WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		got, err := tar.NewReader(&b).Next()
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != 8<<30 || got.PAXRecords["size"] != "8589934592" {
			t.Errorf("size %d, records %v", got.Size, got.PAXRecords)
		}
	})
	t.Run("U16/device numbers above 2097151", func(t *testing.T) {
		for _, i := range []Info{{Mode: sIFCHR | 0o600, Major: 1 << 22, Minor: 1}, {Mode: sIFBLK | 0o600, Major: 8, Minor: 1<<21 + 5}} {
			src := changesOf(Change{Path: "dev", Source: "/nonexistent", Info: i})
			_, _, err := Write(context.Background(), io.Discard, src)
			if !errors.Is(err, ErrUnrepresentable) {
				t.Errorf("%d/%d: error %v, want ErrUnrepresentable", i.Major, i.Minor, err)
			}
		}
		// The largest numbers that fit are written.
		src := changesOf(Change{Path: "dev", Source: "/nonexistent", Info: Info{Mode: sIFCHR | 0o600, Major: maxOctal7, Minor: maxOctal7}})
		if _, _, err := Write(context.Background(), io.Discard, src); err != nil {
			t.Errorf("device %d/%d: %v", maxOctal7, maxOctal7, err)
		}
	})
}

// changesOf is a Source of fixed changes.
type changesOf Change

func (c changesOf) Changes(ctx context.Context, fn ChangeFunc) error { return fn(Change(c)) }
