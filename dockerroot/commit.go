package dockerroot

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/image"
)

// DecodeContainerConfig reads a container config as stored in
// config.v2.json.
func DecodeContainerConfig(raw json.RawMessage) (ContainerConfig, error) {
	var c ContainerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("reading container config: %w", err)
	}
	return c, nil
}

// ApplyChanges returns the new image config docker commit makes from a
// container's config and --change instructions. With no changes docker
// merges the container's config into itself, so the returned config is
// also what container_config must show (Labels null becomes {} in both).
func ApplyChanges(c ContainerConfig, changes []string) (cfg, containerConfig ContainerConfig, err error) {
	n, err := image.CommitConfig(toV1(c), changes)
	if err != nil {
		return ContainerConfig{}, ContainerConfig{}, err
	}
	out := fromV1(n, c)
	if len(changes) == 0 {
		return out, out, nil
	}
	return out, c, nil
}

func toV1(c ContainerConfig) v1.Config {
	v := v1.Config{
		Hostname: c.Hostname, Domainname: c.Domainname, User: c.User,
		AttachStdin: c.AttachStdin, AttachStdout: c.AttachStdout, AttachStderr: c.AttachStderr,
		ExposedPorts: c.ExposedPorts, Tty: c.Tty, OpenStdin: c.OpenStdin, StdinOnce: c.StdinOnce,
		Env: c.Env, Cmd: c.Cmd, ArgsEscaped: c.ArgsEscaped, Image: c.Image, Volumes: c.Volumes,
		WorkingDir: c.WorkingDir, Entrypoint: c.Entrypoint, NetworkDisabled: c.NetworkDisabled,
		MacAddress: c.MacAddress, OnBuild: c.OnBuild, Labels: c.Labels, StopSignal: c.StopSignal, Shell: c.Shell,
	}
	if c.Healthcheck != nil {
		v.Healthcheck = &v1.HealthConfig{Test: c.Healthcheck.Test, Interval: c.Healthcheck.Interval,
			Timeout: c.Healthcheck.Timeout, StartPeriod: c.Healthcheck.StartPeriod, Retries: c.Healthcheck.Retries}
	}
	return v
}

// fromV1 converts back, taking from orig the fields v1.Config lacks.
func fromV1(v v1.Config, orig ContainerConfig) ContainerConfig {
	c := ContainerConfig{
		Hostname: v.Hostname, Domainname: v.Domainname, User: v.User,
		AttachStdin: v.AttachStdin, AttachStdout: v.AttachStdout, AttachStderr: v.AttachStderr,
		ExposedPorts: v.ExposedPorts, Tty: v.Tty, OpenStdin: v.OpenStdin, StdinOnce: v.StdinOnce,
		Env: v.Env, Cmd: v.Cmd, ArgsEscaped: v.ArgsEscaped, Image: v.Image, Volumes: v.Volumes,
		WorkingDir: v.WorkingDir, Entrypoint: v.Entrypoint, NetworkDisabled: v.NetworkDisabled,
		MacAddress: v.MacAddress, OnBuild: v.OnBuild, Labels: v.Labels, StopSignal: v.StopSignal,
		StopTimeout: orig.StopTimeout, Shell: v.Shell,
	}
	if v.Healthcheck != nil {
		c.Healthcheck = &HealthConfig{Test: v.Healthcheck.Test, Interval: v.Healthcheck.Interval,
			Timeout: v.Healthcheck.Timeout, StartPeriod: v.Healthcheck.StartPeriod, Retries: v.Healthcheck.Retries}
	}
	return c
}
