package policy

import (
	"fmt"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/selector"
)

// Selector rewrites for scoping (compat §2.3).
const (
	anyNamespaceTerm      = "has(" + api.LabelNamespace + ")"
	noNamespaceTerm       = "!has(" + api.LabelNamespace + ")"
	anyServiceAccountTerm = "has(" + api.LabelServiceAccount + ")"
)

// prefixSelector parses s and returns its canonical form with every label
// key prefixed, e.g. `team == "a"` → `pcns.team == "a"`.
func prefixSelector(s, prefix string) (string, error) {
	sel, err := selector.Parse(s)
	if err != nil {
		return "", err
	}
	return sel.MapKeys(func(k string) string { return prefix + k }).String(), nil
}

// namespaceTerm is the selector term for "in namespace ns".
func namespaceTerm(ns string) string {
	return fmt.Sprintf("%s == '%s'", api.LabelNamespace, ns)
}

// ScopeEntitySelector returns the selector that a rule's source or
// destination matches endpoints with, once namespacing is applied, exactly
// as Calico builds it when it converts rules for Felix. ns is the policy's
// namespace ("" for a GlobalNetworkPolicy or a profile). The result is ""
// when the side has no selector constraint. notSelector is not part of it
// (it is never namespaced), but its presence makes a namespaced rule's side
// limited to the namespace.
//
//  1. serviceAccounts: names become
//     `projectcalico.org/serviceaccount in {...}`, the selector's keys are
//     prefixed with "pcsa."; both are ANDed, then ANDed with selector.
//  2. The namespace term: a namespaceSelector with keys prefixed "pcns."
//     and all() / global() rewritten to has() / !has() of
//     projectcalico.org/namespace; else, in a namespaced policy,
//     `projectcalico.org/namespace == '<ns>'`; else none.
//  3. The namespace term is ANDed in only when selector, serviceAccounts,
//     notSelector or namespaceSelector is present; with only a notSelector
//     it is the whole positive selector.
func ScopeEntitySelector(er *api.EntityRule, ns string) (string, error) {
	var saSel string
	if er.ServiceAccounts != nil {
		var err error
		if saSel, err = serviceAccountSelector(er.ServiceAccounts); err != nil {
			return "", err
		}
	}
	var nsSel string
	if er.NamespaceSelector != "" {
		p, err := prefixSelector(er.NamespaceSelector, api.NamespaceLabelPrefix)
		if err != nil {
			return "", fmt.Errorf("namespaceSelector: %w", err)
		}
		p = strings.ReplaceAll(p, "all()", anyNamespaceTerm)
		nsSel = strings.ReplaceAll(p, "global()", noNamespaceTerm)
	} else if ns != "" {
		nsSel = namespaceTerm(ns)
	}
	if er.Selector != "" {
		if _, err := selector.Parse(er.Selector); err != nil {
			return "", fmt.Errorf("selector: %w", err)
		}
	}
	var sel string
	switch {
	case saSel != "" && er.Selector != "":
		sel = "(" + saSel + ") && (" + er.Selector + ")"
	case saSel != "":
		sel = saSel
	default:
		sel = er.Selector
	}
	if nsSel != "" && (sel != "" || er.NotSelector != "" || er.NamespaceSelector != "") {
		if sel != "" {
			sel = "(" + nsSel + ") && (" + sel + ")"
		} else {
			sel = nsSel
		}
	}
	return sel, nil
}

func serviceAccountSelector(sam *api.ServiceAccountMatch) (string, error) {
	var prefixed string
	if sam.Selector != "" {
		var err error
		if prefixed, err = prefixSelector(sam.Selector, api.ServiceAccountLabelPrefix); err != nil {
			return "", fmt.Errorf("serviceAccounts.selector: %w", err)
		}
	}
	if len(sam.Names) == 0 {
		return prefixed, nil
	}
	for i, n := range sam.Names {
		if n == "" || strings.ContainsAny(n, `'"`) {
			return "", fmt.Errorf("serviceAccounts.names[%d]: %q is not a service account name", i, n)
		}
	}
	names, err := selector.Parse(fmt.Sprintf("%s in { '%s' }", api.LabelServiceAccount, strings.Join(sam.Names, "', '")))
	if err != nil {
		return "", fmt.Errorf("serviceAccounts.names: %w", err)
	}
	if prefixed == "" {
		return names.String(), nil
	}
	return "(" + prefixed + ") && (" + names.String() + ")", nil
}

// ScopePolicySelector returns the endpoint selector of a policy once
// scoping is applied, as Calico builds it. For a NetworkPolicy (ns != ""),
// `(sel) && projectcalico.org/namespace == '<ns>'`; for a
// GlobalNetworkPolicy the namespaceSelector with keys prefixed "pcns." is
// ANDed in and every all() becomes has(projectcalico.org/namespace). In both
// the serviceAccountSelector with keys prefixed "pcsa." is ANDed in (in a
// global policy every all() then becomes
// has(projectcalico.org/serviceaccount)). nsSel must be "" when ns is set.
func ScopePolicySelector(ns, sel, nsSel, saSel string) (string, error) {
	if sel != "" {
		if _, err := selector.Parse(sel); err != nil {
			return "", fmt.Errorf("spec.selector: %w", err)
		}
	}
	appendPrefixed := func(cur, add, prefix, field string) (string, error) {
		p, err := prefixSelector(add, prefix)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		if cur == "" {
			return p, nil
		}
		return "(" + cur + ") && " + p, nil
	}
	var err error
	if ns != "" {
		if nsSel != "" {
			return "", fmt.Errorf("spec.namespaceSelector: not allowed in a namespaced policy")
		}
		if sel == "" {
			sel = namespaceTerm(ns)
		} else {
			sel = "(" + sel + ") && " + namespaceTerm(ns)
		}
		if saSel != "" {
			if sel, err = appendPrefixed(sel, saSel, api.ServiceAccountLabelPrefix, "spec.serviceAccountSelector"); err != nil {
				return "", err
			}
		}
		return sel, nil
	}
	if nsSel != "" {
		if sel, err = appendPrefixed(sel, nsSel, api.NamespaceLabelPrefix, "spec.namespaceSelector"); err != nil {
			return "", err
		}
		sel = strings.ReplaceAll(sel, "all()", anyNamespaceTerm)
	}
	if saSel != "" {
		if sel, err = appendPrefixed(sel, saSel, api.ServiceAccountLabelPrefix, "spec.serviceAccountSelector"); err != nil {
			return "", err
		}
		sel = strings.ReplaceAll(sel, "all()", anyServiceAccountTerm)
	}
	return sel, nil
}
