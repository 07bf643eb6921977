package image

import (
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// merge fills in the changed config from the container's, as moby's
// daemon/commit.go merge does. It changes n only; c is read.
func merge(n, c *v1.Config) {
	if n.User == "" {
		n.User = c.User
	}
	if len(n.ExposedPorts) == 0 {
		n.ExposedPorts = c.ExposedPorts
	} else {
		for p := range c.ExposedPorts {
			n.ExposedPorts[p] = struct{}{}
		}
	}
	if len(n.Env) == 0 {
		n.Env = c.Env
	} else {
		for _, ce := range c.Env {
			ck, _, _ := strings.Cut(ce, "=")
			found := false
			for _, ne := range n.Env {
				if nk, _, _ := strings.Cut(ne, "="); nk == ck {
					found = true
					break
				}
			}
			if !found {
				n.Env = append(n.Env, ce)
			}
		}
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for k, v := range c.Labels {
		if _, ok := n.Labels[k]; !ok {
			n.Labels[k] = v
		}
	}
	if len(n.Entrypoint) == 0 {
		if len(n.Cmd) == 0 {
			n.Cmd = c.Cmd
			n.ArgsEscaped = c.ArgsEscaped
		}
		if n.Entrypoint == nil {
			n.Entrypoint = c.Entrypoint
		}
	}
	if c.Healthcheck != nil {
		if n.Healthcheck == nil {
			n.Healthcheck = c.Healthcheck
		} else {
			if len(n.Healthcheck.Test) == 0 {
				n.Healthcheck.Test = c.Healthcheck.Test
			}
			if n.Healthcheck.Interval == 0 {
				n.Healthcheck.Interval = c.Healthcheck.Interval
			}
			if n.Healthcheck.Timeout == 0 {
				n.Healthcheck.Timeout = c.Healthcheck.Timeout
			}
			if n.Healthcheck.StartPeriod == 0 {
				n.Healthcheck.StartPeriod = c.Healthcheck.StartPeriod
			}
			if n.Healthcheck.Retries == 0 {
				n.Healthcheck.Retries = c.Healthcheck.Retries
			}
		}
	}
	if n.WorkingDir == "" {
		n.WorkingDir = c.WorkingDir
	}
	if len(n.Volumes) == 0 {
		n.Volumes = c.Volumes
	} else {
		for v := range c.Volumes {
			n.Volumes[v] = struct{}{}
		}
	}
	if n.StopSignal == "" {
		n.StopSignal = c.StopSignal
	}
}
