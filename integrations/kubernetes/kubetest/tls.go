package kubetest

import "crypto/tls"

// insecureTLS is for the readiness poll of a loopback server whose
// self-signed certificate the test has no reason to check.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // test-only loopback
