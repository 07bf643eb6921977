package progress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Modes are the --progress values.
var Modes = []string{"auto", "plain", "tty", "rawjson", "quiet"}

// Resolve checks mode and turns auto into tty or plain by whether the
// output is a terminal.
func Resolve(mode string, terminal bool) (string, error) {
	switch mode {
	case "auto", "":
		if terminal {
			return "tty", nil
		}
		return "plain", nil
	case "plain", "tty", "rawjson", "quiet":
		return mode, nil
	}
	return "", fmt.Errorf("bad --progress %q (want %s)", mode, strings.Join(Modes, ", "))
}

// Event is one rawjson line.
type Event struct {
	Time time.Time `json:"time"`
	// Type is step (a step starts), cached, done (with ID), warning or log.
	Type    string  `json:"type"`
	Step    int     `json:"step,omitempty"`
	Total   int     `json:"total,omitempty"`
	Name    string  `json:"name,omitempty"`
	ID      string  `json:"id,omitempty"`
	Data    string  `json:"data,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
}

// Writer is an io.Writer that renders the builder's lines to out. Call
// Close at the end (it flushes a partial last line and stops the tty
// timer). Writes may come from several goroutines.
type Writer struct {
	mu      sync.Mutex
	out     io.Writer
	mode    string
	now     func() time.Time
	partial []byte
	step    int
	name    string
	start   time.Time
	cached  bool
	live    bool // tty: the status line is drawn
	stop    chan struct{}
	done    chan struct{}
	redrawn chan struct{} // tests: told after each timer redraw
	poll    func() (Transfer, bool)
	tstart  time.Time // when poll first reported a transfer
}

// New returns a Writer for mode (after Resolve) onto out. In tty mode,
// tick, if not nil, drives the timer redraws (a time.Ticker's channel
// when nil).
func New(out io.Writer, mode string, tick <-chan time.Time) *Writer {
	w := &Writer{out: out, mode: mode, now: time.Now}
	if mode == "tty" {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		var t *time.Ticker
		if tick == nil {
			t = time.NewTicker(100 * time.Millisecond)
			tick = t.C
		}
		go func() {
			defer close(w.done)
			if t != nil {
				defer t.Stop()
			}
			for {
				select {
				case <-w.stop:
					return
				case <-tick:
					w.mu.Lock()
					w.redraw()
					r := w.redrawn
					w.mu.Unlock()
					if r != nil {
						r <- struct{}{}
					}
				}
			}
		}()
	}
	return w
}

var (
	stepLine = regexp.MustCompile(`^Step (\d+)/(\d+) : (.*)$`)
	idLine   = regexp.MustCompile(`^ ---> ([0-9a-f]{12})$`)
)

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.line(line)
	}
	return len(p), nil
}

// Close flushes a partial line, ends the running step and stops the tty
// timer. It is safe to call more than once.
func (w *Writer) Close() error {
	if w.stop != nil {
		select {
		case <-w.stop:
		default:
			close(w.stop)
			<-w.done
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
	w.finish("")
	w.clear()
	return nil
}

func (w *Writer) emit(e Event) {
	if w.mode == "quiet" {
		return
	}
	if w.mode == "rawjson" {
		e.Time = w.now().UTC()
		b, _ := json.Marshal(e)
		fmt.Fprintf(w.out, "%s\n", b)
		return
	}
	w.clear()
	switch e.Type {
	case "step":
		fmt.Fprintf(w.out, "#%d [%d/%d] %s\n", e.Step, e.Step, e.Total, e.Name)
	case "cached":
		fmt.Fprintf(w.out, "#%d CACHED\n", e.Step)
	case "done":
		fmt.Fprintf(w.out, "#%d DONE %.1fs\n", e.Step, e.Seconds)
	case "warning":
		fmt.Fprintf(w.out, "%s\n", e.Data)
	default:
		if e.Step > 0 {
			fmt.Fprintf(w.out, "#%d %s\n", e.Step, e.Data)
		} else {
			fmt.Fprintf(w.out, "%s\n", e.Data)
		}
	}
	w.redraw()
}

// finish ends the running step, if any (id is what it made).
func (w *Writer) finish(id string) {
	if w.step == 0 {
		return
	}
	step, cached := w.step, w.cached
	w.step, w.name = 0, ""
	if !cached || id != "" {
		w.emit(Event{Type: "done", Step: step, ID: id, Seconds: roundTenth(w.now().Sub(w.start))})
	}
	w.clear()
}

func roundTenth(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

func (w *Writer) line(l string) {
	if m := stepLine.FindStringSubmatch(l); m != nil {
		w.finish("")
		n, _ := strconv.Atoi(m[1])
		total, _ := strconv.Atoi(m[2])
		w.step, w.name, w.start, w.cached = n, m[3], w.now(), false
		w.emit(Event{Type: "step", Step: n, Total: total, Name: m[3]})
		return
	}
	switch {
	case l == " ---> Using cache":
		w.cached = true
		w.emit(Event{Type: "cached", Step: w.step})
	case idLine.MatchString(l):
		if w.step > 0 {
			id := idLine.FindStringSubmatch(l)[1]
			if w.cached {
				w.step, w.name = 0, ""
				w.clear()
				return
			}
			w.finish(id)
		}
	case strings.HasPrefix(l, "[WARNING]") || strings.HasPrefix(l, "[Warning]"):
		w.emit(Event{Type: "warning", Data: l})
	default:
		w.emit(Event{Type: "log", Step: w.step, Data: l})
	}
}

// clear erases the tty status line.
func (w *Writer) clear() {
	if w.live {
		fmt.Fprint(w.out, "\r\x1b[K")
		w.live = false
	}
}

// redraw draws the tty status line: the running step and its time, or,
// between steps, the tracked transfer (Track).
func (w *Writer) redraw() {
	if w.mode != "tty" {
		return
	}
	if w.step == 0 {
		w.clear()
		w.drawTransfer()
		return
	}
	if w.cached {
		return
	}
	w.clear()
	fmt.Fprintf(w.out, "#%d %s  %.1fs", w.step, w.name, w.now().Sub(w.start).Seconds())
	w.live = true
}
