package builder

import (
	"fmt"

	"github.com/layercommit/layercommit/dockerfile"
	"github.com/layercommit/layercommit/sandbox"
)

// BuildKit's entitlements (buildctl --allow) that this builder knows.
const (
	EntitlementNetworkHost      = "network.host"
	EntitlementSecurityInsecure = "security.insecure"
)

// checkNetworkOptions refuses an unknown build network or entitlement
// before anything is opened.
func checkNetworkOptions(o Options) error {
	switch o.Network {
	case "", sandbox.NetworkDefault, sandbox.NetworkNone, sandbox.NetworkHost:
	default:
		return fmt.Errorf("unknown network %q (want default, none or host)", o.Network)
	}
	if o.HostNetwork && o.Network != "" && o.Network != sandbox.NetworkHost {
		return fmt.Errorf("network %q conflicts with the host network", o.Network)
	}
	for _, a := range o.Allow {
		switch a {
		case EntitlementNetworkHost, EntitlementSecurityInsecure:
		default:
			return fmt.Errorf("unknown entitlement %q (want %s or %s)", a, EntitlementNetworkHost, EntitlementSecurityInsecure)
		}
	}
	return nil
}

// allowed reports whether entitlement e was granted: by Allow, or for
// network.host by asking for the host network for the whole build (as
// buildx's --network=host grants it).
func (b *build) allowed(e string) bool {
	if e == EntitlementNetworkHost && (b.o.HostNetwork || b.o.Network == sandbox.NetworkHost) {
		return true
	}
	for _, a := range b.o.Allow {
		if a == e {
			return true
		}
	}
	return false
}

// entitled refuses a RUN that asks for what the build did not allow, as
// BuildKit refuses it ("network.host is not allowed").
func (b *build) entitled(in *dockerfile.RunInstr) error {
	if in.Network == sandbox.NetworkHost && !b.allowed(EntitlementNetworkHost) {
		return lineErr(in.Line, "RUN --network=host: %s is not allowed (grant it with --allow %s)", EntitlementNetworkHost, EntitlementNetworkHost)
	}
	if in.Security == "insecure" && !b.allowed(EntitlementSecurityInsecure) {
		return lineErr(in.Line, "RUN --security=insecure: %s is not allowed (grant it with --allow %s)", EntitlementSecurityInsecure, EntitlementSecurityInsecure)
	}
	return nil
}

// runNetwork is the sandbox network of one RUN: its --network, else the
// build's.
func (b *build) runNetwork(in *dockerfile.RunInstr) string {
	switch in.Network {
	case sandbox.NetworkNone, sandbox.NetworkHost:
		return in.Network
	}
	switch {
	case b.o.HostNetwork:
		return sandbox.NetworkHost
	case b.o.Network == "":
		return sandbox.NetworkDefault
	}
	return b.o.Network
}
