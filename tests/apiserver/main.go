// Command herald-test-apiserver runs a real kube-apiserver backed by an
// in-process etcd for Herald's integration tests. The same binary mints
// client kubeconfigs, and is kubectl and kube-proxy (as subcommands, or when
// invoked under those names).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const prog = "herald-test-apiserver"

const usage = `usage:
  herald-test-apiserver serve --data-dir DIR [--bind-address IP] [--advertise-address IP]
                              [--secure-port N] [--service-cluster-ip-range CIDRS] [--stop-on-stdin-eof]
  herald-test-apiserver kubeconfig --data-dir DIR --user NAME [--group G]... [--out FILE]
  herald-test-apiserver kubectl ARGS...    (or invoke the binary as "kubectl")
  herald-test-apiserver kube-proxy ARGS... (or invoke the binary as "kube-proxy")
`

func main() {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		runKubectl(os.Args[1:])
		return
	case "kube-proxy":
		runKubeProxy(os.Args[1:])
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch sub, args := os.Args[1], os.Args[2:]; sub {
	case "serve":
		err = serve(args)
	case "kubeconfig":
		err = kubeconfig(args)
	case "kubectl":
		runKubectl(args)
	case "kube-proxy":
		runKubeProxy(args)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(os.Stdout, usage)
	default:
		err = fmt.Errorf("unknown subcommand %q\n%s", sub, strings.TrimSpace(usage))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}
