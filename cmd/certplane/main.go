// Command certplane is the self-hostable control plane: Cloudflare's Zero
// Trust certificate API on embedded SQLite or PostgreSQL.
package main

import (
	"fmt"
	"os"

	"github.com/certagent/certagent/internal/buildinfo"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("certplane", buildinfo.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "certplane: not built yet")
	os.Exit(2)
}
