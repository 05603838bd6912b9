package policy

import (
	"fmt"
	"strings"
)

// Reason says what decided a Verdict.
type Reason int

// Reasons.
const (
	// NotOurs: the address is not a workload endpoint; nothing is enforced
	// on this side.
	NotOurs Reason = iota
	// RuleAllow and RuleDeny: a policy rule decided.
	RuleAllow
	RuleDeny
	// TierDefault: a tier had policies selecting the endpoint, none of
	// their rules decided, and the tier's default action is Deny.
	TierDefault
	// ProfileAllow and ProfileDeny: a profile rule decided.
	ProfileAllow
	ProfileDeny
	// ProfileMissing: the endpoint names a profile that does not exist,
	// which denies everything.
	ProfileMissing
	// NoProfileDrop: no policy decided and no profile allowed.
	NoProfileDrop
)

var reasonNames = [...]string{"NotOurs", "RuleAllow", "RuleDeny", "TierDefault", "ProfileAllow", "ProfileDeny", "ProfileMissing", "NoProfileDrop"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// MarshalText renders the reason's name.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// MarshalText renders "ingress" or "egress".
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Verdict is the outcome for one direction at one endpoint.
type Verdict struct {
	Allowed   bool      `json:"allowed"`
	Direction Direction `json:"direction"`
	// Endpoint is the endpoint's ID ("ns/name"), or the address when the
	// side is not ours.
	Endpoint string `json:"endpoint"`
	Reason   Reason `json:"reason"`
	// Tier and Policy (the policy's name) name the deciding rule's policy,
	// or the tier whose default action decided.
	Tier   string `json:"tier,omitempty"`
	Policy string `json:"policy,omitempty"`
	// PolicyNamespace is the deciding NetworkPolicy's namespace (empty
	// for a GlobalNetworkPolicy).
	PolicyNamespace string `json:"policyNamespace,omitempty"`
	// Profile names the deciding profile.
	Profile string `json:"profile,omitempty"`
	// RuleIndex is the deciding rule's index in its list, -1 if none.
	RuleIndex int `json:"ruleIndex"`
	// Selecting lists the policies of the deciding tier that selected the
	// endpoint (TierDefault), or whether any tier applied at all
	// (AnyTierApplied) for profile decisions.
	Selecting      []string `json:"selecting,omitempty"`
	AnyTierApplied bool     `json:"anyTierApplied"`
	// Trace is the walk-through, filled only when asked for.
	Trace []Step `json:"trace,omitempty"`
}

// Step is one line of a walk-through.
type Step struct {
	Tier      string `json:"tier,omitempty"`
	Policy    string `json:"policy,omitempty"`
	Profile   string `json:"profile,omitempty"`
	RuleIndex int    `json:"ruleIndex"`
	// Event is what happened, in words.
	Event string `json:"event"`
}

func (s Step) String() string {
	var where []string
	if s.Tier != "" {
		where = append(where, fmt.Sprintf("tier %q", s.Tier))
	}
	if s.Policy != "" {
		where = append(where, "policy "+s.Policy)
	}
	if s.Profile != "" {
		where = append(where, fmt.Sprintf("profile %q", s.Profile))
	}
	if s.RuleIndex >= 0 {
		where = append(where, fmt.Sprintf("rule %d", s.RuleIndex))
	}
	if len(where) == 0 {
		return s.Event
	}
	return strings.Join(where, " ") + ": " + s.Event
}

func (v Verdict) word() string {
	if v.Allowed {
		return "allowed"
	}
	return "denied"
}

// String explains the verdict in one line, e.g.
//
//	ingress x/b: denied by end of tier "default" (policy knp.default.deny-all selected the endpoint, no rule matched)
func (v Verdict) String() string {
	head := v.Direction.String() + " " + v.Endpoint + ": "
	switch v.Reason {
	case NotOurs:
		return head + "not a workload endpoint, no policy enforced"
	case RuleAllow, RuleDeny:
		return fmt.Sprintf("%s%s by tier %q policy %s %s rule %d", head, v.word(), v.Tier, v.Policy, v.Direction, v.RuleIndex)
	case TierDefault:
		noun := "policy"
		if len(v.Selecting) > 1 {
			noun = "policies"
		}
		return fmt.Sprintf("%sdenied by end of tier %q (%s %s selected the endpoint, no rule matched)", head, v.Tier, noun, strings.Join(v.Selecting, ", "))
	case ProfileAllow, ProfileDeny:
		return fmt.Sprintf("%s%s by profile %q %s rule %d (%s)", head, v.word(), v.Profile, v.Direction, v.RuleIndex, v.noPolicyText())
	case ProfileMissing:
		return fmt.Sprintf("%sdenied: profile %q does not exist (%s)", head, v.Profile, v.noPolicyText())
	case NoProfileDrop:
		return fmt.Sprintf("%sdenied: no profile allowed it (%s)", head, v.noPolicyText())
	}
	return head + v.word()
}

func (v Verdict) noPolicyText() string {
	if v.AnyTierApplied {
		return "every tier that applied passed"
	}
	return "no policy selected the endpoint"
}

// Result is the outcome for a packet: both sides must allow it.
type Result struct {
	Allowed bool    `json:"allowed"`
	Egress  Verdict `json:"egress"`
	Ingress Verdict `json:"ingress"`
}

// Deciding returns the verdict that decided the result: the first side
// that denied, else the ingress side (or egress when ingress is not ours).
func (r Result) Deciding() Verdict {
	switch {
	case !r.Egress.Allowed:
		return r.Egress
	case !r.Ingress.Allowed:
		return r.Ingress
	case r.Ingress.Reason != NotOurs:
		return r.Ingress
	}
	return r.Egress
}
