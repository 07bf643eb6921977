package tarsplit_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/internal/tarsplit"
	"github.com/layercommit/layercommit/internal/verify"
)

func layerTar(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct {
		h    tar.Header
		body string
	}{
		{tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Uname: "someone", PAXRecords: map[string]string{"user.x": "y"}}, "hello\n"},
		{tar.Header{Name: "d/h", Typeflag: tar.TypeLink, Linkname: "d/f"}, ""},
		{tar.Header{Name: "d/.wh.gone", Typeflag: tar.TypeReg, Mode: 0}, ""},
	} {
		e.h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&e.h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	// Padding after the trailer is part of the stream, as some engines write it.
	b.Write(make([]byte, 1024))
	return b.Bytes()
}

func hash(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// TestRoundTrip: a tar unpacked with Unpack is rebuilt by Open byte for
// byte; a wrong diffID or a changed file fails the stream.
func TestRoundTrip(t *testing.T) {
	orig := layerTar(t)
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, dir string)
		// wantErr: the stream must fail (tar-split's per-file checksum
		// or the diffID check, whichever sees it first).
		wantErr bool
	}{
		{name: "same bytes"},
		{name: "file changed after unpacking", mutate: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "d/f"), []byte("HELLO\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, meta := filepath.Join(t.TempDir(), "diff"), filepath.Join(t.TempDir(), "ts.gz")
			os.Mkdir(dir, 0o755)
			n, err := tarsplit.Unpack(t.Context(), bytes.NewReader(orig), dir, meta, 0o600, hash(orig), false)
			if err != nil || n != int64(len(orig)) {
				t.Fatalf("Unpack: %d bytes, %v", n, err)
			}
			if tc.mutate != nil {
				tc.mutate(t, dir)
			}
			rc, err := tarsplit.Open(meta, dir, hash(orig))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("a changed file was served without error")
				}
				return
			}
			if err != nil || !bytes.Equal(got, orig) {
				t.Fatalf("rebuilt %d bytes (%v), want the %d unpacked", len(got), err, len(orig))
			}
		})
	}
	t.Run("wrong diffID", func(t *testing.T) {
		dir, meta := filepath.Join(t.TempDir(), "diff"), filepath.Join(t.TempDir(), "ts.gz")
		os.Mkdir(dir, 0o755)
		if _, err := tarsplit.Unpack(t.Context(), bytes.NewReader(orig), dir, meta, 0o600, hash([]byte("x")), false); !errors.Is(err, verify.ErrDigestMismatch) {
			t.Fatalf("got %v, want ErrDigestMismatch", err)
		}
	})
}
