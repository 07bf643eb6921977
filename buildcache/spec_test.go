package buildcache

import "testing"

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		to   bool
		want Spec
	}{
		{"reg/app:cache", false, Spec{Type: "registry", Ref: "reg/app:cache"}},
		{"type=registry,ref=docker://reg/app:cache", false, Spec{Type: "registry", Ref: "reg/app:cache"}},
		{"type=registry,ref=reg/app:cache,mode=max", true, Spec{Type: "registry", Ref: "reg/app:cache", Max: true}},
		{"type=registry,ref=reg/app:cache,mode=min,ignore-error=true,compression=zstd", true, Spec{Type: "registry", Ref: "reg/app:cache", IgnoreError: true}},
		{"type=local,src=/c", false, Spec{Type: "local", Dir: "/c"}},
		{"type=local,dest=/c,mode=max", true, Spec{Type: "local", Dir: "/c", Max: true}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSpec(tc.in, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []struct {
		in string
		to bool
	}{{"", false}, {"type=registry", true}, {"type=local,ref=x", true}, {"type=registry,ref=x,dest=/d", true}, {"type=registry,ref=x,junk", false}} {
		if s, err := ParseSpec(bad.in, bad.to); err == nil {
			t.Errorf("ParseSpec(%q) = %+v, want an error", bad.in, s)
		}
	}
}
