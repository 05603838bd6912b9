// Package selector implements Calico's label-selector language exactly:
// parsing, evaluation against labels, the canonical string form and the
// unique ID derived from it, plus an incremental index of which labelled
// items each selector matches.
//
// # Language
//
// A selector is a boolean expression over an item's labels:
//
//	k == "v"   k != "v"   k in {"a", "b"}   k not in {"a"}   has(k)
//	k contains "s"   k starts with "s"   k ends with "s"   all()   global()
//	!e   e && e   e || e   ( e )
//
// Precedence is ! > && > ||. Strings use single or double quotes with no
// escapes. The empty (or blank) selector is all(). Only space and tab are
// whitespace. Label keys are runs of [a-zA-Z0-9_./-] of 1 to 512
// characters. A comparison is always label OP literal. When the label is
// absent, != and "not in" are true and every other comparison is false.
// These are the rules of libcalico-go/lib/selector, reproduced token for
// token: the same inputs are accepted and rejected.
//
// # Canonical form and identity
//
// String returns Calico's canonical form, and UniqueID returns
// "s:" + base64url(SHA-224("s:" + String())) without padding. These define
// IP-set identity, so they match Calico byte for byte, including its quirks:
// set values are sorted and deduplicated, each And/Or node with two or more
// operands is wrapped in parentheses (nested groups are not flattened), a
// run of "!" is folded into at most one negation, but a negation of a
// parenthesised negation, as in "!(!has(a))", renders as "!!has(a)", which
// re-parses to has(a). String is therefore idempotent after at most one
// re-parse.
//
// # Evaluation
//
// Evaluate takes a label map; EvaluateLabels takes any Labels source, such
// as an endpoint's own labels layered over its profiles' labels (own
// wins). Neither allocates. An Or of three or more k == v terms on one key
// is evaluated as a single set lookup; an "in" set of more than eight
// values is binary searched.
//
// # Label index
//
// Index keeps, for many selectors and many labelled items (with optional
// parents whose labels they inherit), which items each selector matches,
// and reports matches starting and stopping through callbacks. It indexes
// each selector on a label (key, value) or key that every item it matches
// must carry, so one item's label change re-evaluates only a handful of
// candidate selectors, never all of them. Items are indexed by label only
// under the keys that registered selectors' requirements name; a
// selector naming a new key indexes it over all stored items in one pass,
// so items loaded before their selectors cost little until one arrives.
//
// # Errors
//
// Parse never panics. A bad selector yields a *ParseError naming the
// selector, the 1-based character position and what was expected there.
//
// # Concurrency
//
// A *Selector is immutable after Parse and safe for concurrent use
// (String and UniqueID are computed once, lazily, without races). An
// *Index is not safe for concurrent use; its owner serialises calls, and
// the callbacks run synchronously inside the call that caused them.
//
// This package imports only the standard library.
package selector
