package containerdstore

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	bolt "go.etcd.io/bbolt"

	"github.com/layercommit/layercommit/internal/oracle"
)

// addFile returns base with one more layer holding path with body.
func addFile(t *testing.T, base v1.Image, path, body string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir, _, _ := strings.Cut(path, "/")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)})
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// orphan stores a blob with no record, which containerd's gc must
// collect: the control that shows a gc ran. With record set, the blob
// also gets a content record that nothing references: containerd's gc
// removes it, and removing a record is what makes it sweep the content
// store's files (core/metadata/db.go dirtyCS).
func orphan(t *testing.T, s *Store, ns string, record bool) string {
	t.Helper()
	b := make([]byte, 64)
	rand.Read(b)
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := s.writeBlob(h, int64(len(b)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
		t.Fatal(err)
	}
	if record {
		db, err := bolt.Open(s.metaDB(), 0o644, &bolt.Options{Timeout: lockProbe})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			blobs, err := createBuckets(tx.Bucket(keyV1), []byte(ns), keyContent, keyBlob)
			if err != nil {
				return err
			}
			return putContent(blobs, h, int64(len(b)), nil, time.Now())
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	p, _ := s.BlobPath(h)
	return p
}

// blobs lists the digests of img's layers, config and manifest.
func blobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	out := []string{d.String(), m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

// TestWriteBack writes an image into a stopped containerd's root; the
// restarted containerd lists it, keeps its blobs through a gc (which
// collects a record-less control blob) and runs it.
func TestWriteBack(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			c := oracle.StartContainerd(t, v, "")
			s, err := Open(c.Root)
			if err != nil {
				t.Fatal(err)
			}
			base, err := s.V1Image(c.Namespace, c.Base, v1.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("written by layercommit into containerd %s\n", v)
			img := addFile(t, base, "lc/hello", body)
			name := "docker.io/library/lc-write:" + strings.ReplaceAll(v, ".", "-")
			c.Stop(t)
			controls := []string{orphan(t, s, c.Namespace, false), orphan(t, s, c.Namespace, true)}
			desc, err := s.WriteImage(img, WriteOptions{Namespace: c.Namespace, Names: []string{name}})
			if err != nil {
				t.Fatal(err)
			}
			c.Start(t)
			ls := c.Run(t, "images", "ls")
			if !strings.Contains(ls, name) || !strings.Contains(ls, desc.Digest.String()) {
				t.Fatalf("ctr images ls does not list %s at %s:\n%s", name, desc.Digest, ls)
			}
			// Deleting an unrelated image synchronously runs the gc.
			c.Run(t, "images", "tag", c.Base, "docker.io/library/lc-unrelated:1")
			c.Run(t, "images", "rm", "--sync", "docker.io/library/lc-unrelated:1")
			for _, control := range controls {
				if _, err := os.Stat(control); !os.IsNotExist(err) {
					t.Fatalf("the gc did not run: control blob %s is still there (%v)", control, err)
				}
			}
			content := c.Run(t, "content", "ls")
			for _, d := range blobs(t, img) {
				if !strings.Contains(content, d) {
					t.Fatalf("blob %s was collected; ctr content ls:\n%s", d, content)
				}
			}
			if out := c.Run(t, "run", "--rm", name, "lc-run", "cat", "/lc/hello"); out != strings.TrimSpace(body) {
				t.Fatalf("ctr run printed %q, want %q", out, body)
			}
			// What we wrote reads back as the image we wrote.
			back, err := s.V1Image(c.Namespace, name, v1.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, back, desc.Digest)
			dumpLabels(t, s, c.Namespace)
		})
	}
}

// readAll reads every blob of img (digest-checked by Blob) and checks
// that its manifest digest is want.
func readAll(t *testing.T, img v1.Image, want v1.Hash) {
	t.Helper()
	if d, err := img.Digest(); err != nil || d != want {
		t.Fatalf("image digest %s (%v), want %s", d, err, want)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		r, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		r.Close()
	}
}
