package image

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// emptyLayer is a layer whose diffID is the empty tar's.
func emptyLayer() v1.Layer {
	return static.NewLayer(make([]byte, 1024), types.DockerLayer)
}

func TestCommitLayers(t *testing.T) {
	base, err := random.Image(100, 2)
	if err != nil {
		t.Fatal(err)
	}
	bcf, _ := base.ConfigFile()
	bcf = bcf.DeepCopy()
	bcf.History = []v1.History{{CreatedBy: "one"}, {CreatedBy: "two"}}
	bcf.Config.Env = []string{"KEEP=1"}
	if base, err = mutate.ConfigFile(base, bcf); err != nil {
		t.Fatal(err)
	}
	l1, _ := random.Layer(100, types.DockerLayer)
	l2, _ := random.Layer(100, types.DockerLayer)
	cases := []struct {
		name            string
		layers          []v1.Layer
		opts            []Option
		wantLayers      int
		wantHistory     int
		wantLastEmpty   bool
		wantBaseHistory bool
	}{
		{"one layer", []v1.Layer{l1}, nil, 3, 3, false, true},
		{"split in two", []v1.Layer{l1, l2}, nil, 4, 4, false, true},
		{"empty parts left out", []v1.Layer{emptyLayer(), l1, emptyLayer()}, nil, 3, 3, false, true},
		{"nothing", nil, nil, 2, 3, true, true},
		{"squash", []v1.Layer{l1}, []Option{WithSquash()}, 1, 1, false, false},
		{"squash of a split", []v1.Layer{l1, l2}, []Option{WithSquash()}, 2, 2, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, err := CommitLayers(base, tc.layers, append([]Option{WithCreatedBy("new")}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			// Checked as written and read back (an empty Labels map
			// in memory is absent in the JSON).
			p, err := layout.Write(t.TempDir(), empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AppendImage(img); err != nil {
				t.Fatal(err)
			}
			h, _ := img.Digest()
			back, err := p.Image(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(back); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}
			ls, _ := img.Layers()
			cf, _ := img.ConfigFile()
			if len(ls) != tc.wantLayers || len(cf.RootFS.DiffIDs) != tc.wantLayers || len(cf.History) != tc.wantHistory {
				t.Fatalf("%d layers, %d diffIDs, %d history entries; want %d, %d", len(ls), len(cf.RootFS.DiffIDs), len(cf.History), tc.wantLayers, tc.wantHistory)
			}
			if last := cf.History[len(cf.History)-1]; last.CreatedBy != "new" || last.EmptyLayer != tc.wantLastEmpty {
				t.Fatalf("last history entry %+v", last)
			}
			if got := cf.History[0].CreatedBy == "one"; got != tc.wantBaseHistory {
				t.Fatalf("base history kept: %t, want %t", got, tc.wantBaseHistory)
			}
			if len(cf.Config.Env) != 1 || cf.Config.Env[0] != "KEEP=1" {
				t.Fatalf("config env %v, want the base's", cf.Config.Env)
			}
		})
	}
}
