package containersstorage_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercommit/layercommit/containersstorage"
)

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app", "localhost/app:latest"},
		{"app:v1", "localhost/app:v1"},
		{"team/app:v1", "localhost/team/app:v1"},
		{"localhost/app", "localhost/app:latest"},
		{"registry.example:5000/app", "registry.example:5000/app:latest"},
		{"quay.io/a/b:c", "quay.io/a/b:c"},
		{"App", ""},
		{"a b", ""},
		{"a@sha256:00", ""},
		{"", ""},
	} {
		got, err := containersstorage.NormalizeName(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// write writes img into the store under name.
func write(t *testing.T, s *containersstorage.Store, img v1.Image, name string) error {
	t.Helper()
	d, err := s.Destination(name)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	return d.Write(t.Context(), img)
}

// TestDestinationWrite writes an image into a store and reads it back
// through the store's own records: config verified against its ID, each
// layer rebuilt from the tar-split we recorded and checked against its
// diffID. A second image under the same name takes the name.
func TestDestinationWrite(t *testing.T) {
	root, run := fakeStore(t)
	s, err := containersstorage.Open(root, run)
	if err != nil {
		t.Fatal(err)
	}
	var ids []v1.Hash
	for i := 0; i < 2; i++ {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(t, s, img, "app:v1"); err != nil {
			t.Fatal(err)
		}
		id, _ := img.ConfigName()
		ids = append(ids, id)
		back, err := s.Image(id.Hex)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := back.Layers()
		if err != nil || len(ls) != 2 {
			t.Fatalf("%d layers: %v", len(ls), err)
		}
		want, _ := img.Layers()
		for n, l := range ls {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("layer %d read back: %v", n, err)
			}
			wrc, _ := want[n].Uncompressed()
			wb, _ := io.ReadAll(wrc)
			wrc.Close()
			if string(got) != string(wb) {
				t.Errorf("layer %d: %d bytes back, %d written", n, len(got), len(wb))
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "overlay-images/images.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"names"`, `"localhost/app:v1"`} {
		if n := strings.Count(string(b), want); n != 1 {
			t.Errorf("images.json has %s %d times, want once (the name moves): %s", want, n, b)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(root, "overlay/.layercommit-*")); len(m) != 0 {
		t.Errorf("temp layer dirs left: %v", m)
	}
	for _, l := range []string{"overlay-layers/layers.lock", "overlay-images/images.lock"} {
		if b, _ := os.ReadFile(filepath.Join(root, l)); len(b) != 64 {
			t.Errorf("%s holds %d bytes, want a 64-byte last-writer token", l, len(b))
		}
	}
}

// TestDestinationWriteLocked: with the image store locked by another
// process the write is refused after the timeout and nothing is written.
func TestDestinationWriteLocked(t *testing.T) {
	for _, lock := range []string{"overlay-layers/layers.lock", "overlay-images/images.lock"} {
		t.Run(lock, func(t *testing.T) {
			root, run := fakeStore(t)
			s, err := containersstorage.Open(root, run)
			if err != nil {
				t.Fatal(err)
			}
			s.LockTimeout = 200 * time.Millisecond
			before, _ := os.ReadFile(filepath.Join(root, "overlay-layers/layers.json"))
			holdLock(t, filepath.Join(root, lock))
			img, err := random.Image(512, 1)
			if err != nil {
				t.Fatal(err)
			}
			err = write(t, s, img, "app")
			if !errors.Is(err, containersstorage.ErrLocked) {
				t.Fatalf("got %v, want ErrLocked", err)
			}
			after, _ := os.ReadFile(filepath.Join(root, "overlay-layers/layers.json"))
			if string(after) != string(before) {
				t.Errorf("layers.json changed")
			}
			if m, _ := filepath.Glob(filepath.Join(root, "overlay/*")); len(m) != 2 {
				t.Errorf("overlay holds %v, want only the two layers", m)
			}
		})
	}
}

// lyingLayer claims a diffID its stream does not have.
type lyingLayer struct{ v1.Layer }

func (lyingLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, nil
}

// TestDestinationWriteRollback: a write that fails after some layers are
// made removes them and leaves the records as they were.
func TestDestinationWriteRollback(t *testing.T) {
	good, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		layers []v1.Layer
		setup  func(t *testing.T, root string)
		msg    string
	}{
		{name: "second layer is not its diffID", layers: []v1.Layer{good, lyingLayer{bad}}, msg: "layer stream has sha256:"},
		{name: "image records unreadable", layers: []v1.Layer{good}, setup: func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "overlay-images/images.json"), []byte("{"), 0o600)
		}, msg: "images.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, run := fakeStore(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			s, err := containersstorage.Open(root, run)
			if err != nil {
				t.Fatal(err)
			}
			img, err := mutate.AppendLayers(empty.Image, tc.layers...)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(root, "overlay-layers/layers.json"))
			err = write(t, s, img, "app")
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want an error containing %q", err, tc.msg)
			}
			after, _ := os.ReadFile(filepath.Join(root, "overlay-layers/layers.json"))
			if string(after) != string(before) {
				t.Errorf("layers.json changed: %s", after)
			}
			for glob, want := range map[string]int{"overlay/*": 3, "overlay/l/*": 0, "overlay-layers/*.tar-split.gz": 0, "overlay-images/*": 2} {
				if m, _ := filepath.Glob(filepath.Join(root, glob)); len(m) != want {
					t.Errorf("%s: %v, want %d", glob, m, want)
				}
			}
		})
	}
}
