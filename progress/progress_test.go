package progress

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// stream is what the builder prints for a two-step build with one hit.
const stream = "Step 1/3 : FROM base\n ---> 3f5cb3d45766\nStep 2/3 : COPY f /f\n ---> Using cache\n ---> 9fb44a579003\nStep 3/3 : RUN echo hi\nhi\n[WARNING]: something\n ---> dd4b8e840bef\n"

// fakeClock advances one second per call.
func fakeClock() func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{"plain", "#1 [1/3] FROM base\n#1 DONE 1.0s\n#2 [2/3] COPY f /f\n#2 CACHED\n#3 [3/3] RUN echo hi\n#3 hi\n[WARNING]: something\n#3 DONE 1.0s\n"},
		{"quiet", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var out bytes.Buffer
			w := New(&out, tc.mode, nil)
			w.now = fakeClock()
			// Split writes across line boundaries, as a pipe delivers them.
			for _, c := range []string{stream[:10], stream[10:57], stream[57:]} {
				w.Write([]byte(c))
			}
			w.Close()
			if out.String() != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", out.String(), tc.want)
			}
		})
	}
}

func TestRawJSON(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, "rawjson", nil)
	w.Write([]byte(stream))
	w.Close()
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); got != "step,done,step,cached,step,log,warning,done" {
		t.Errorf("events %s", got)
	}
}

// TestTTY: a tick redraws the running step's timer in place; the final
// text is the plain text plus erased status lines.
func TestTTY(t *testing.T) {
	var out bytes.Buffer
	tick := make(chan time.Time)
	w := New(&out, "tty", tick)
	redrawn := make(chan struct{})
	w.mu.Lock()
	w.now, w.redrawn = fakeClock(), redrawn
	w.mu.Unlock()
	w.Write([]byte("Step 1/1 : RUN sleep\n"))
	for range 2 {
		tick <- time.Time{}
		<-redrawn
	}
	w.Write([]byte("out\n ---> dd4b8e840bef\n"))
	w.Close()
	// Drawn at the step's start, then at each tick, erased for output.
	want := "#1 [1/1] RUN sleep\n#1 RUN sleep  1.0s\r\x1b[K#1 RUN sleep  2.0s\r\x1b[K#1 RUN sleep  3.0s\r\x1b[K#1 out\n#1 RUN sleep  4.0s\r\x1b[K#1 DONE 5.0s\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
	for _, bad := range []string{"fancy", "json"} {
		if _, err := Resolve(bad, true); err == nil || !strings.Contains(err.Error(), "bad --progress") {
			t.Errorf("Resolve(%q): %v", bad, err)
		}
	}
	for in, want := range map[string]string{"auto": "tty", "plain": "plain"} {
		if got, _ := Resolve(in, true); got != want {
			t.Errorf("Resolve(%q, tty) = %q", in, got)
		}
	}
	if got, _ := Resolve("auto", false); got != "plain" {
		t.Errorf("auto off a terminal: %q", got)
	}
}
