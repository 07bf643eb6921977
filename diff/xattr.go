package diff

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// XattrPolicy says which extended attributes of an entry go into its
// layer header, as PAX SCHILY.xattr.NAME records. The zero value keeps
// none; ParseXattrs makes the others.
//
// Whatever the policy, overlay internals never go in: trusted.overlay.*
// always, and user.overlay.* from an overlay read WithUserXattr (see
// headerRules.keptXattrs).
type XattrPolicy struct {
	all      bool
	names    map[string]bool
	prefixes []string
	spelling string
}

// ErrXattrPattern is returned by ParseXattrs for a list it cannot accept.
var ErrXattrPattern = errors.New("bad xattr pattern")

// ParseXattrs reads an --xattrs list: comma-separated items, each one of
//
//	all               every xattr of the entry
//	NAMESPACE.NAME    that xattr exactly (security.capability, user.mime_type)
//	PREFIX.*          every xattr whose name starts with PREFIX. (user.*)
//
// A name has a namespace (it holds a dot) and no '*' except a final ".*",
// no '=' (a PAX key cannot hold one), no NUL and no spaces. The empty
// list is an error: name security.capability to keep only that.
func ParseXattrs(s string) (XattrPolicy, error) {
	p := XattrPolicy{names: map[string]bool{}, spelling: s}
	if s == "" {
		return XattrPolicy{}, fmt.Errorf("%w: empty list", ErrXattrPattern)
	}
	for _, item := range strings.Split(s, ",") {
		switch {
		case item == "all":
			p.all = true
			continue
		case item == "":
			return XattrPolicy{}, fmt.Errorf("%w: empty item in %q", ErrXattrPattern, s)
		case strings.ContainsAny(item, "= \t\n\x00"):
			return XattrPolicy{}, fmt.Errorf("%w: %q holds '=', a space or a NUL", ErrXattrPattern, item)
		}
		name, prefix := strings.CutSuffix(item, "*")
		switch {
		case strings.Contains(name, "*"):
			return XattrPolicy{}, fmt.Errorf("%w: %q: '*' may only end a PREFIX.* item", ErrXattrPattern, item)
		case prefix && (!strings.HasSuffix(name, ".") || name == "."):
			return XattrPolicy{}, fmt.Errorf("%w: %q: a wildcard must follow a dot, as in user.*", ErrXattrPattern, item)
		case !prefix && (!strings.Contains(name, ".") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".")):
			return XattrPolicy{}, fmt.Errorf("%w: %q is not NAMESPACE.NAME", ErrXattrPattern, item)
		case prefix:
			p.prefixes = append(p.prefixes, name)
		default:
			p.names[name] = true
		}
	}
	sort.Strings(p.prefixes)
	return p, nil
}

// String is the list as it was parsed.
func (p XattrPolicy) String() string { return p.spelling }

// Match reports whether the policy keeps the xattr called name (before the
// overlay-internals rule, which headerRules applies on top).
func (p XattrPolicy) Match(name string) bool {
	if p.all || p.names[name] {
		return true
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// capabilityOnly reports whether the policy keeps security.capability and
// nothing else: the engines' rule, which needs no xattr beyond the one
// every source already reads.
func (p XattrPolicy) capabilityOnly() bool {
	return !p.all && len(p.prefixes) == 0 && len(p.names) == 1 && p.names[xattrCapability]
}

// WithXattrs picks which xattrs go into the layer (default: the profile's
// Xattrs, security.capability for every Docker profile).
func WithXattrs(p XattrPolicy) Option { return func(o *writeOptions) { o.xattrs = &p } }
