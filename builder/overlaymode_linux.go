package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/internal/overlay"
	"github.com/layercommit/layercommit/internal/userns"
	"github.com/layercommit/layercommit/layer"
	"github.com/layercommit/layercommit/sandbox"
	"github.com/layercommit/layercommit/unpack"
)

// The mechanisms that give a step a writable root over the image's
// layers and find what the step changed (Options.Overlay).
const (
	// OverlayAuto ("") is OverlayNative where the kernel mounts an
	// overlay in the state dir, else OverlayFuse where fuse-overlayfs
	// does, else OverlayNaive; a fallback is reported (Options.Notice).
	OverlayAuto = ""
	// OverlayNative is the kernel's overlayfs (userxattr in a user
	// namespace); the upper dir is the layer.
	OverlayNative = "native"
	// OverlayFuse is fuse-overlayfs; its upper dir is read with
	// diff.WithFuse, giving the kernel's layer.
	OverlayFuse = "fuse"
	// OverlayNaive mounts nothing: the layers are merged into a copy that
	// the step changes and a pristine copy, and the layer is diff.Naive
	// of the two (the same file system, at the cost of two copies of the
	// root per step).
	OverlayNaive = "naive"
)

// nativeExtra are mount options added to every kernel overlay the
// builder mounts itself (the probe, WORKDIR and COPY roots, COPY --from):
// tests set an option the kernel refuses, so that the kernel's overlay
// cannot mount in the process and the fallback is what the build uses.
var nativeExtra []string

// overlayChoice is the build's mechanism, probed once (shared by the
// stages' copies of the build).
type overlayChoice struct {
	once sync.Once
	mech string
	err  error
}

// mechanism returns the build's mechanism: the one asked for, or the
// first of native, fuse and naive that can mount an overlay (lower,
// upper and work dirs) in the state dir, with one line to Options.Notice
// naming why the ones before it could not.
func (b *build) mechanism() (string, error) {
	c := b.ovl
	c.once.Do(func() {
		switch b.o.Overlay {
		case OverlayNative, OverlayFuse, OverlayNaive:
			c.mech = b.o.Overlay
			return
		case OverlayAuto:
		default:
			c.err = fmt.Errorf("--overlay %q: want native, fuse or naive", b.o.Overlay)
			return
		}
		nerr := b.probeMount(false)
		if nerr == nil {
			c.mech = OverlayNative
			return
		}
		if ferr := b.probeMount(true); ferr == nil {
			c.mech = OverlayFuse
			b.notice("the kernel's overlayfs cannot mount here (%v): RUN and COPY use fuse-overlayfs (--overlay to choose)", nerr)
		} else {
			c.mech = OverlayNaive
			b.notice("neither the kernel's overlayfs (%v) nor fuse-overlayfs (%v) can mount here: RUN and COPY use naive copies of the root, diffed (--overlay to choose)", nerr, ferr)
		}
	})
	return c.mech, c.err
}

// notice writes one line to Options.Notice (standard error when nil).
func (b *build) notice(format string, args ...any) {
	w := b.o.Notice
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "layercommit: overlay: "+format+"\n", args...)
}

// probeMount mounts an overlay of empty dirs in the state dir, as a
// step's (the kernel's, or fuse-overlayfs's), and unmounts it.
func (b *build) probeMount(fuse bool) error {
	dir, err := b.st.TempDir("probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o := overlay.Options{Lowers: []string{filepath.Join(dir, "l")}, Upper: filepath.Join(dir, "u"), Work: filepath.Join(dir, "w"), Fuse: fuse}
	if !fuse {
		o.Extra = nativeExtra
	}
	m := filepath.Join(dir, "m")
	for _, d := range []string{o.Lowers[0], o.Upper, o.Work, m} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := overlay.Mount(m, o); err != nil {
		return errors.Unwrap(err) // without "mounting overlay at <probe dir>"
	}
	return unmount(m)
}

// stepRoot is a step's writable root: merged is the root to change;
// finish unmounts or lets go of it and returns the change set.
type stepRoot struct {
	merged string
	// ready says merged is set up in this process (a fuse-overlayfs
	// mount or a naive copy): the sandbox binds it, mounting nothing.
	ready bool
	src   func() (diff.Source, error)
	// detach, where not nil (the kernel's overlay, mounted here),
	// unmounts merged and returns the upper dir, for a step that goes on
	// writing there directly (see stepFiles); src then diffs it as is.
	detach func() (upper string, err error)
}

// mountStep makes the root of a step over lowers (top first, at least
// one) with the upper and work dirs in dir: mounted at dir/merged
// (native: only when mount is set; the sandbox mounts the RUN root
// itself), or copied there (naive, with the pristine copy in
// dir/pristine).
func (b *build) mountStep(ctx context.Context, dir string, lowers []string, mount bool) (*stepRoot, error) {
	mech, err := b.mechanism()
	if err != nil {
		return nil, err
	}
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	var dopts []diff.OverlayOption
	if userns.RunningInUserNS() {
		dopts = append(dopts, diff.WithUserXattr())
	}
	switch mech {
	case OverlayNaive:
		pristine := filepath.Join(dir, "pristine")
		if err := os.Mkdir(pristine, 0o755); err != nil {
			return nil, err
		}
		if err := b.flatten(ctx, lowers, pristine, merged); err != nil {
			return nil, err
		}
		return &stepRoot{merged: merged, ready: true, src: func() (diff.Source, error) {
			return diff.Naive(pristine, merged, func(string, ...any) {}), nil
		}}, nil
	case OverlayFuse:
		if err := overlay.Mount(merged, overlay.Options{Lowers: lowers, Upper: upper, Work: work, Fuse: true, Volatile: true}); err != nil {
			return nil, err
		}
		dopts = append(dopts, diff.WithFuse(), diff.WithLowers(lowers...))
		return &stepRoot{merged: merged, ready: true, src: func() (diff.Source, error) {
			if err := unmount(merged); err != nil {
				return nil, err
			}
			return diff.Overlay(upper, dopts...), nil
		}}, nil
	}
	if mount {
		// Volatile: the state dir trusts the upper dir it adopts only in
		// this boot (statedir.HasLayer).
		if err := overlay.Mount(merged, overlay.Options{Lowers: lowers, Upper: upper, Work: work, Extra: nativeExtra, Volatile: true}); err != nil {
			return nil, err
		}
	}
	mounted := mount
	r := &stepRoot{merged: merged, src: func() (diff.Source, error) {
		if mounted {
			if err := unmount(merged); err != nil {
				return nil, err
			}
		}
		return diff.Overlay(upper, dopts...), nil
	}}
	if mount {
		r.detach = func() (string, error) {
			if err := unmount(merged); err != nil {
				return "", err
			}
			mounted = false
			return upper, nil
		}
	}
	return r, nil
}

// release lets go of a root whose changes are not wanted.
func (r *stepRoot) release() {
	if r.src != nil {
		_, _ = r.src()
		r.src = nil
	}
}

// layer ends the step's root and writes its change set as a layer.
func (b *build) stepLayer(ctx context.Context, r *stepRoot, opts ...layer.Option) (*layer.Layer, error) {
	src, err := r.src()
	r.src = nil
	if err != nil {
		return nil, err
	}
	return b.st.WriteLayerFrom(ctx, src, opts...)
}

// readOnlyRoot gives a read-only root of lowers (top first) at merged
// for COPY --from: a read-only overlay (the kernel's or fuse-overlayfs's)
// or, naive, a merged copy.
func (b *build) readOnlyRoot(ctx context.Context, merged string, lowers []string, empty string) error {
	mech, err := b.mechanism()
	if err != nil {
		return err
	}
	if mech == OverlayNaive {
		return b.flatten(ctx, lowers, merged)
	}
	// A read-only overlay needs at least two lowers.
	o := overlay.Options{Lowers: append(lowers, empty), Fuse: mech == OverlayFuse}
	if !o.Fuse {
		o.Extra = nativeExtra
	}
	return overlay.Mount(merged, o)
}

// flatten writes the merged tree of lowers (top first) into each of
// dsts (existing or not): the layers squashed into one tar, applied to
// every copy in the same pass.
func (b *build) flatten(ctx context.Context, lowers []string, dsts ...string) error {
	var sopts []diff.OverlayOption
	uopts := []unpack.Option{}
	if userns.RunningInUserNS() {
		sopts = append(sopts, diff.WithUserXattr())
		uopts = append(uopts, unpack.WithDeviceSkip(func(string, error) {}))
	}
	if userns.Inside() == userns.ModeSingle {
		uopts = append(uopts, unpack.WithUnmappedOwners())
	}
	all, err := diff.ParseXattrs("all")
	if err != nil {
		return err
	}
	var ws []io.Writer
	errc := make(chan error, len(dsts))
	for _, d := range dsts {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		pr, pw := io.Pipe()
		ws = append(ws, pw)
		go func(d string) {
			_, err := unpack.Apply(ctx, d, pr, uopts...)
			if err == nil {
				_, err = io.Copy(io.Discard, pr)
			}
			pr.CloseWithError(err)
			errc <- err
		}(d)
	}
	_, _, werr := diff.Write(ctx, io.MultiWriter(ws...), diff.Squash(lowers, sopts...), diff.WithXattrs(all))
	for _, w := range ws {
		w.(*io.PipeWriter).CloseWithError(werr)
	}
	err = werr
	for range dsts {
		if aerr := <-errc; err == nil && aerr != nil {
			err = aerr
		}
	}
	if err != nil {
		return fmt.Errorf("copying the image's root (--overlay naive): %w", err)
	}
	return nil
}

// readyMounts sets up, outside the sandbox, the overlays RUN --mount
// asks for (from a stage or an image) when the build does not use the
// kernel's overlay: each becomes a bind of a fuse-overlayfs mount or of
// a naive copy in dir (writes to either are discarded with dir). The
// returned func unmounts them.
func (b *build) readyMounts(ctx context.Context, dir string, mounts []sandbox.Mount) ([]sandbox.Mount, func(), error) {
	mech, err := b.mechanism()
	if err != nil || mech == OverlayNative {
		return mounts, func() {}, err
	}
	var mounted []string
	release := func() {
		for _, m := range mounted {
			_ = unmount(m)
		}
	}
	out := append([]sandbox.Mount(nil), mounts...)
	for i := range out {
		m := &out[i]
		if m.Kind != "overlay" {
			continue
		}
		target := filepath.Join(dir, fmt.Sprintf("rmount-%d", i))
		if err := os.Mkdir(target, 0o755); err != nil {
			release()
			return nil, nil, err
		}
		if mech == OverlayNaive {
			err = b.flatten(ctx, m.Lowers, target)
		} else {
			o := overlay.Options{Lowers: m.Lowers, Upper: m.Upper, Work: m.Work, Fuse: true, Volatile: true}
			if o.Upper == "" && len(o.Lowers) < 2 {
				empty := target + "-empty"
				if err = os.Mkdir(empty, 0o755); err == nil {
					o.Lowers = append(append([]string(nil), o.Lowers...), empty)
				}
			}
			if err == nil {
				if err = overlay.Mount(target, o); err == nil {
					mounted = append(mounted, target)
				}
			}
		}
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("RUN --mount %s: %w", m.Target, err)
		}
		m.Kind, m.Source, m.Lowers, m.Upper, m.Work = "bind", target, nil, "", ""
	}
	return out, release, nil
}
