package kubeclient

import (
	"net/http"
	"testing"
)

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool
		code  int
		h     string
		want  string
	}{
		{"write 500", true, http.StatusInternalServerError, "1", ""},
		{"write 503", true, http.StatusServiceUnavailable, "5", ""},
		{"write 429 dropped: the caller must see it, not a deadline", true, http.StatusTooManyRequests, "32", ""},
		{"write 409: client-go does not retry", true, http.StatusConflict, "5", "5"},
		{"read 503 capped", false, http.StatusServiceUnavailable, "5", "1"},
		{"read 429 capped", false, http.StatusTooManyRequests, "30", "1"},
		{"read 500 capped", false, http.StatusInternalServerError, "2", "1"},
		{"read within the cap", false, http.StatusServiceUnavailable, "1", "1"},
		{"read zero", false, http.StatusServiceUnavailable, "0", "0"},
		{"read HTTP date: client-go ignores it", false, http.StatusServiceUnavailable, "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"},
		{"read 200: client-go does not retry", false, http.StatusOK, "5", "5"},
		{"read 404", false, http.StatusNotFound, "5", "5"},
	} {
		if got := retryAfter(tc.write, tc.code, tc.h); got != tc.want {
			t.Errorf("%s: retryAfter(%v, %d, %q) = %q, want %q", tc.name, tc.write, tc.code, tc.h, got, tc.want)
		}
	}
}
