package export

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func init() { register(dockerDaemon{}) }

// dockerDaemon is an image in a running dockerd, through its API:
// docker-daemon:NAME[:TAG] (skopeo's name). A write is a POST
// /images/load of a docker-archive stream; a read is GET
// /images/NAME/get into a temp file read as a docker-archive. Two
// endpoints over plain HTTP: our own client rather than moby's, whose
// module would be most of our dependency tree.
type dockerDaemon struct{}

func (dockerDaemon) Name() string { return "docker-daemon" }

// daemonClient is an HTTP client for the dockerd at host and the base
// URL to put paths under.
func daemonClient(host string) (*http.Client, string, error) {
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("bad DOCKER_HOST %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &http.Client{Transport: tr}, "http://docker", nil
	case "tcp", "http":
		return &http.Client{}, "http://" + u.Host, nil
	}
	return nil, "", fmt.Errorf("bad DOCKER_HOST %q: want unix:// or tcp://", host)
}

func daemonTag(rest string) (name.Tag, error) {
	if rest == "" {
		return name.Tag{}, errors.New("docker-daemon: wants a name, as in docker-daemon:NAME[:TAG]")
	}
	t, err := name.NewTag(rest)
	if err != nil {
		return name.Tag{}, fmt.Errorf("docker-daemon: bad image name %q: %w", rest, err)
	}
	return t, nil
}

// apiError reads dockerd's {"message": ...} error body.
func apiError(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return fmt.Errorf("%s: dockerd: %s", what, m.Message)
	}
	return fmt.Errorf("%s: dockerd: %s: %s", what, resp.Status, strings.TrimSpace(string(b)))
}

func (dockerDaemon) Open(ctx context.Context, rest string, o *Options) (v1.Image, error) {
	tag, err := daemonTag(rest)
	if err != nil {
		return nil, err
	}
	c, base, err := daemonClient(o.DockerHost)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/images/"+url.PathEscape(rest)+"/get", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s from dockerd: %w", rest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError("reading "+rest, resp)
	}
	// The archive is read at random: keep it in an unlinked temp file
	// that lives as long as the image value.
	f, err := os.CreateTemp("", "layercommit-daemon-*.tar")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s from dockerd: %w", rest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := fi.Size()
	img, err := tarball.Image(func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(f, 0, size)), nil
	}, &tag)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s from dockerd: %w", rest, err)
	}
	return check(img)
}

func (dockerDaemon) Destination(_ context.Context, rest string, o *Options) (Destination, error) {
	tag, err := daemonTag(rest)
	if err != nil {
		return nil, err
	}
	c, base, err := daemonClient(o.DockerHost)
	if err != nil {
		return nil, err
	}
	blobs, err := newTempBlobs("", "layercommit-daemon-blobs-", false)
	if err != nil {
		return nil, err
	}
	return &daemonDest{tag: tag, client: c, base: base, tempBlobs: blobs}, nil
}

type daemonDest struct {
	tag    name.Tag
	client *http.Client
	base   string
	tempBlobs
}

func (d *daemonDest) PrefersOCI() bool { return false }

// Write streams img as a docker-archive into POST /images/load; dockerd
// loads it whole or not at all.
func (d *daemonDest) Write(ctx context.Context, img v1.Image) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(d.tag, img, pw)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/images/load?quiet=1", pr)
	if err != nil {
		pr.Close()
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := d.client.Do(req)
	pr.Close()
	if err != nil {
		return fmt.Errorf("loading into dockerd: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError("loading into dockerd", resp)
	}
	// The body is a JSON message stream; a failed load says so in it.
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Error != "" {
			return fmt.Errorf("loading into dockerd: %s", m.Error)
		}
	}
	return sc.Err()
}
