package progress

import (
	"bytes"
	"testing"
	"time"
)

func TestFormatTransfer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       Transfer
		elapsed time.Duration
		want    string
	}{
		{"push half done", Transfer{"pushing", 5 << 20, 10 << 20}, 5 * time.Second, "pushing 5.0 MiB / 10.0 MiB  1.0 MiB/s  ETA 5s"},
		{"nothing sent yet", Transfer{"pushing", 0, 10 << 20}, time.Second, "pushing 0 B / 10.0 MiB  --/s  ETA --"},
		{"no time yet", Transfer{"pushing", 100, 200}, 0, "pushing 100 B / 200 B  --/s  ETA --"},
		{"no total: no ETA", Transfer{"committing", 3 << 30, 0}, 2 * time.Second, "committing 3.0 GiB  1.5 GiB/s"},
		{"long ETA", Transfer{"pushing", 1 << 20, 100 << 20}, 2 * time.Second, "pushing 1.0 MiB / 100.0 MiB  512.0 KiB/s  ETA 3m18s"},
		{"done past total", Transfer{"pushing", 11, 10}, time.Second, "pushing 11 B / 10 B  11 B/s  ETA 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatTransfer(tc.t, tc.elapsed); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTTYTransfer: between steps the tty view draws the tracked push in
// place, its rate measured from the first poll that reports it (fake
// clock, ticks sent by hand: no timing).
func TestTTYTransfer(t *testing.T) {
	var out bytes.Buffer
	tick := make(chan time.Time)
	w := New(&out, "tty", tick)
	redrawn := make(chan struct{})
	var done int64
	active := false
	w.Track(func() (Transfer, bool) { return Transfer{"pushing", done, 4 << 20}, active })
	w.mu.Lock()
	w.now, w.redrawn = fakeClock(), redrawn
	w.mu.Unlock()
	w.Write([]byte("Step 1/1 : FROM base\n ---> 3f5cb3d45766\n"))
	out.Reset()
	tick <- time.Time{} // no push yet: nothing drawn
	<-redrawn
	for _, d := range []int64{0, 1 << 20, 2 << 20} {
		w.mu.Lock()
		done, active = d, true
		w.mu.Unlock()
		tick <- time.Time{}
		<-redrawn
	}
	w.Close()
	want := "pushing 0 B / 4.0 MiB  --/s  ETA --" +
		"\r\x1b[Kpushing 1.0 MiB / 4.0 MiB  1.0 MiB/s  ETA 3s" +
		"\r\x1b[Kpushing 2.0 MiB / 4.0 MiB  1.0 MiB/s  ETA 2s" +
		"\r\x1b[K"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
}
