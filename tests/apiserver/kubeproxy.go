package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

// runKubeProxy runs the real kube-proxy with args, as cmd/kube-proxy does.
// The lab runs one per node, inside the node's network namespace.
func runKubeProxy(args []string) {
	os.Args = append([]string{"kube-proxy"}, args...)
	command := app.NewProxyCommand()
	os.Exit(cli.Run(command))
}
