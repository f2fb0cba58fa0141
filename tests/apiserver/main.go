// Command herald-test-apiserver runs a real kube-apiserver backed by an
// in-process etcd for Herald's integration tests. The same binary mints
// client kubeconfigs, and is kubectl, kube-proxy, kubelet, kube-controller-manager
// and kube-scheduler (as subcommands, or when invoked under those names).
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
                              [--cluster-endpoint IP] [--secure-port N] [--service-cluster-ip-range CIDRS] [--stop-on-stdin-eof]
  herald-test-apiserver kubeconfig --data-dir DIR --user NAME [--group G]... [--out FILE]
  herald-test-apiserver kubectl ARGS...    (or invoke the binary as "kubectl")
  herald-test-apiserver COMPONENT ARGS... (or invoke the binary as COMPONENT), where
                       COMPONENT is kube-proxy, kubelet, kube-controller-manager or kube-scheduler
`

func main() {
	switch name := filepath.Base(os.Args[0]); {
	case name == "kubectl":
		runKubectl(os.Args[1:])
		return
	case components[name] != nil:
		runComponent(name, os.Args[1:])
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch sub, args := os.Args[1], os.Args[2:]; {
	case sub == "serve":
		err = serve(args)
	case sub == "kubeconfig":
		err = kubeconfig(args)
	case sub == "kubectl":
		runKubectl(args)
	case components[sub] != nil:
		runComponent(sub, args)
	case sub == "help" || sub == "-h" || sub == "-help" || sub == "--help":
		fmt.Fprint(os.Stdout, usage)
	default:
		err = fmt.Errorf("unknown subcommand %q\n%s", sub, strings.TrimSpace(usage))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}
