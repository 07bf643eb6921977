package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func init() { register(registry{}) }

// registry is an image in a registry: docker://HOST[:PORT]/REPO[:TAG].
// Loopback and private addresses are spoken to in plain HTTP (ggcr's
// rule); credentials come from the Docker config and its helpers.
type registry struct{}

func (registry) Name() string { return "docker" }

func parseRemote(rest string) (name.Reference, error) {
	ref, err := name.ParseReference(rest, name.StrictValidation)
	if err != nil {
		// Allow a missing tag (":latest") but nothing else loose.
		if ref, err = name.ParseReference(rest); err != nil {
			return nil, fmt.Errorf("bad registry reference %q: %w", rest, err)
		}
	}
	return ref, nil
}

func (r registry) options(ctx context.Context, o *Options) []remote.Option {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	// A registry that accepts the connection but never answers is a
	// timeout, retried like one, not a hang.
	base.ResponseHeaderTimeout = 2 * time.Minute
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.Keychain),
		remote.WithPlatform(o.Platform),
		remote.WithTransport(resumingTransport{inner: base}),
		remote.WithRetryBackoff(RegistryRetry.Backoff),
		remote.WithRetryStatusCodes(retryStatusCodes...),
	}
}

func (r registry) Open(ctx context.Context, rest string, o *Options) (v1.Image, error) {
	ref, err := parseRemote(rest)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, r.options(ctx, o)...)
	if err != nil {
		return nil, err
	}
	if err := checkManifestType(img); err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return check(img)
}

// checkManifestType rejects an ambiguous manifest (CVE-2021-41190): one
// whose mediaType field disagrees with the type the registry served it
// as, or that has both layers and manifests.
func checkManifestType(img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	served, err := img.MediaType()
	if err != nil {
		return err
	}
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Layers    json.RawMessage `json:"layers"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	if m.Layers != nil && m.Manifests != nil {
		return errors.New("the manifest has both layers and manifests")
	}
	if m.MediaType != "" && m.MediaType != served {
		return fmt.Errorf("the manifest says it is %s but was served as %s", m.MediaType, served)
	}
	return nil
}

func (r registry) Destination(ctx context.Context, rest string, o *Options) (Destination, error) {
	ref, err := parseRemote(rest)
	if err != nil {
		return nil, err
	}
	blobs, err := newTempBlobs("", "layercommit-blobs-", false)
	if err != nil {
		return nil, fmt.Errorf("making temp space: %w", err)
	}
	return &registryDest{ref: ref, tempBlobs: blobs, opts: r.options(ctx, o), counters: o}, nil
}

type registryDest struct {
	ref name.Reference
	tempBlobs
	opts     []remote.Option
	counters *Options
}

func (d *registryDest) PrefersOCI() bool { return false }

// Write pushes the blobs the registry lacks (it asks first, so a blob is
// never sent twice), then the manifest under the tag.
func (d *registryDest) Write(ctx context.Context, img v1.Image) error {
	opts := append([]remote.Option(nil), d.opts...)
	if c := d.counters.Counters; c != nil {
		ch := make(chan v1.Update, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range ch {
				c.UploadSize.Store(u.Total)
				c.Uploaded.Store(u.Complete)
			}
		}()
		defer func() { <-done }()
		opts = append(opts, remote.WithProgress(ch))
	}
	if err := remote.Write(d.ref, img, opts...); err != nil {
		return fmt.Errorf("pushing %s: %w", d.ref, err)
	}
	// ggcr does not compare the Docker-Content-Digest of the manifest
	// PUT with what it sent: ask the registry what the tag now names.
	want, err := img.Digest()
	if err != nil {
		return err
	}
	desc, err := remote.Head(d.ref, d.opts...)
	if err != nil {
		return fmt.Errorf("checking %s after the push: %w", d.ref, err)
	}
	if desc.Digest != want {
		return fmt.Errorf("pushing %s: the registry names %s, not the pushed manifest %s", d.ref, desc.Digest, want)
	}
	return nil
}
