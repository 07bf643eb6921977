package image

import (
	"reflect"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestChangesOffline pins rules the daemon test cannot show against
// Docker 20.10 (STOPSIGNAL is accepted from v23 on) and keeps the
// instruction rules checked where no dockerd is available.
func TestChangesOffline(t *testing.T) {
	base := v1.Config{Env: []string{"A=1"}, Cmd: []string{"run"}, Entrypoint: []string{"/init"}}
	for _, tc := range []struct {
		name    string
		changes []string
		want    func(*v1.Config)
		wantErr bool
	}{
		{"stopsignal", []string{"STOPSIGNAL SIGKILL"}, func(c *v1.Config) { c.StopSignal = "SIGKILL" }, false},
		{"stopsignal-number", []string{"STOPSIGNAL 9"}, func(c *v1.Config) { c.StopSignal = "9" }, false},
		{"stopsignal-bad", []string{"STOPSIGNAL SIGNOPE"}, nil, true},
		{"entrypoint-clears-cmd", []string{`ENTRYPOINT ["/x"]`}, func(c *v1.Config) { c.Entrypoint = []string{"/x"}; c.Cmd = nil }, false},
		{"env-expands-before", []string{"ENV A=2 B=$A"}, func(c *v1.Config) { c.Env = []string{"A=2", "B=1"} }, false},
		{"healthcheck", []string{"HEALTHCHECK --interval=1m --start-period=2s CMD true"}, func(c *v1.Config) {
			c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: time.Minute, StartPeriod: 2 * time.Second}
		}, false},
		{"healthcheck-none-with-flags", []string{"HEALTHCHECK --retries=2 NONE"}, nil, true},
		{"expose-bad", []string{"EXPOSE 80/xyz"}, nil, true},
		{"unterminated-quote", []string{`ENV A="x`}, nil, true},
		{"copy-not-allowed", []string{"COPY a b"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ApplyChanges(base, tc.changes)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %q: %+v", tc.changes, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := *base.DeepCopy()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			if base.Env[0] != "A=1" || len(base.Env) != 1 {
				t.Fatalf("base config was modified: %+v", base)
			}
		})
	}
}
