// Package e2e proves the runtimes, nss and firefox-policy stores with the
// real programs, run as ordinary users from a login shell (`su - USER -c`)
// inside a private mount namespace: node, python3 requests, pip (a `pip
// download` from a local HTTPS index), git (`git ls-remote` over smart
// HTTP, git-http-backend behind Go's CGI handler), curl, and headless
// Firefox ESR. Each page is signed by a test root: it fails before
// certagent installs the root, succeeds after, and fails again after the
// root is withdrawn. One user exists only in a directory service (a
// libnss-extrausers passwd file named by the namespace's nsswitch.conf), so
// the nss store's user discovery is proven too.
//
// The package holds only tests; they need root and run under
// CERTAGENT_E2E=1 in CI (skip = failure).
package e2e
