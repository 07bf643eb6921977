package progress

import (
	"fmt"
	"time"
)

// Transfer is how far a long commit or push has got, as a tty view polls
// it: bytes done and, when known, the bytes it will have done in all.
type Transfer struct {
	Label string // what is being done: "pushing", "committing"
	Done  int64
	Total int64 // 0: not known
}

// FormatTransfer renders t after elapsed as one status line: the bytes
// done (of the total), the mean rate since the start and, with a total,
// the time left at that rate ("pushing 5.0 MiB / 10.0 MiB  1.0 MiB/s  ETA
// 5s"). Rate and ETA are "--" until a byte is done.
func FormatTransfer(t Transfer, elapsed time.Duration) string {
	s := t.Label + " " + Bytes(t.Done)
	if t.Total > 0 {
		s += " / " + Bytes(t.Total)
	}
	rate := mean(t.Done, elapsed)
	if rate <= 0 {
		s += "  --/s"
		if t.Total > 0 {
			s += "  ETA --"
		}
		return s
	}
	s += "  " + Rate(t.Done, elapsed)
	if t.Total > 0 {
		left := t.Total - t.Done
		if left < 0 {
			left = 0
		}
		eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
		s += "  ETA " + eta.String()
	}
	return s
}

// Rate renders the mean rate of done bytes over elapsed ("1.0 MiB/s"),
// "--/s" until a byte is done.
func Rate(done int64, elapsed time.Duration) string {
	r := mean(done, elapsed)
	if r <= 0 {
		return "--/s"
	}
	return Bytes(int64(r)) + "/s"
}

func mean(done int64, elapsed time.Duration) float64 {
	if elapsed <= 0 || done <= 0 {
		return 0
	}
	return float64(done) / elapsed.Seconds()
}

// Bytes renders n bytes in binary units with one decimal (B below 1 KiB).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// Track makes the tty view draw poll's transfer as its status line while
// no step runs (a commit or push after the steps): poll reports false
// while there is none. Its rate is measured from the first poll that
// reports one. Other modes ignore it.
func (w *Writer) Track(poll func() (Transfer, bool)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poll = poll
}

// drawTransfer draws the tracked transfer, if one is going on; the caller
// holds mu and has cleared the line.
func (w *Writer) drawTransfer() {
	if w.poll == nil {
		return
	}
	t, ok := w.poll()
	if !ok {
		return
	}
	now := w.now()
	if w.tstart.IsZero() {
		w.tstart = now
	}
	fmt.Fprint(w.out, FormatTransfer(t, now.Sub(w.tstart)))
	w.live = true
}
