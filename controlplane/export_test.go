package controlplane

import "time"

// ParkedRequests is how many list requests s holds parked (park), for
// tests that must tell a parked request from one holding its goroutine.
func ParkedRequests(s *Service) int {
	s.parked.mu.Lock()
	defer s.parked.mu.Unlock()
	return len(s.parked.m)
}

// SetRegistrationLimit replaces s's per-token registration limit.
func SetRegistrationLimit(s *Service, burst int, refill time.Duration) {
	s.registrations = newRateLimiter(burst, refill)
}
