package cni

// SetAfterEndpointWrite installs the test hook that runs after ADD writes
// the endpoint (for the external test package's crash injection).
func SetAfterEndpointWrite(s *Service, f func()) { s.afterEndpointWrite = f }
