package builder

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/layer"
)

// TestStageLayersUncompressed: the layers of a stage the image is not
// made of stay uncompressed in the state dir (the image's, its FROM
// stage's included, are compressed); a later build whose image carries
// such a layer takes it from the cache (no RUN) compressed into the very
// blob a build compressing it at once makes, and records that; with
// CacheAllStages (a mode=max export follows) every layer is compressed.
func TestStageLayersUncompressed(t *testing.T) {
	base := busyboxImage(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM base AS build
RUN echo built > /a && echo RAN-BUILD
FROM build AS more
RUN echo more > /b
FROM base
COPY --from=more /a /b /out/
RUN echo final > /c
`})
	epoch := int64(1700000000)
	opts := func(state, target string, all bool) Options {
		return Options{ContextDir: ctxDir, StateDir: state, Target: target, SourceDateEpoch: &epoch,
			CacheAllStages: all, BuildContexts: map[string]string{"base": base},
			Resolve: func(ctx context.Context, ref string) (v1.Image, error) { return export.Open(ctx, ref) }}
	}
	// kinds gives each step's layer compression by stage ("-": no layer).
	kinds := func(res *Result) map[int]string {
		out := map[int]string{}
		for _, r := range res.Steps {
			k := "-"
			if r.Entry.Layer != nil {
				c, err := layer.CompressionOf(r.Entry.Layer.MediaType)
				if err != nil {
					t.Fatal(err)
				}
				k = string(c)
			}
			out[r.Stage] += k + " "
		}
		return out
	}
	build := func(o Options) (*Result, string) {
		t.Helper()
		var progress strings.Builder
		o.Progress = &progress
		res, err := Build(context.Background(), o)
		if err != nil {
			t.Fatalf("%v\n%s", err, progress.String())
		}
		return res, progress.String()
	}
	state := t.TempDir()
	res, first := build(opts(state, "", false))
	if !strings.Contains(first, "\nRAN-BUILD\n") {
		t.Fatalf("the RUN's output is not in the progress:\n%s", first)
	}
	if got, want := kinds(res), map[int]string{0: "none ", 1: "none ", 2: "gzip gzip "}; !equalKinds(got, want) {
		t.Errorf("final image: layers %v, want %v", got, want)
	}
	layers, err := res.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if mt, _ := l.MediaType(); strings.HasSuffix(string(mt), ".tar") {
			t.Errorf("the image has an uncompressed layer: %s", mt)
		}
	}

	// --target more: its image is build's and more's layers.
	res, progress := build(opts(state, "more", false))
	if strings.Contains(progress, "\nRAN-BUILD\n") {
		t.Error("the cached RUN ran again")
	}
	if got, want := kinds(res), map[int]string{0: "gzip ", 1: "gzip "}; !equalKinds(got, want) {
		t.Errorf("--target more: layers %v, want %v", got, want)
	}
	fresh, _ := build(opts(t.TempDir(), "more", true))
	for i := range res.Steps {
		if a, b := res.Steps[i].Entry.Layer.Digest, fresh.Steps[i].Entry.Layer.Digest; a != b {
			t.Errorf("step %d: compressed later %s, at once %s", i, a, b)
		}
	}
	// The cache now holds the compressed blob: a third build compresses nothing.
	again, _ := build(opts(state, "more", false))
	if again.ID != res.ID || again.Steps[0].Entry.Layer.Digest != res.Steps[0].Entry.Layer.Digest {
		t.Error("a third build gave another image")
	}

	all, _ := build(opts(t.TempDir(), "", true))
	if got, want := kinds(all), map[int]string{0: "gzip ", 1: "gzip ", 2: "gzip gzip "}; !equalKinds(got, want) {
		t.Errorf("CacheAllStages: layers %v, want %v", got, want)
	}
}

func equalKinds(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
