package main

import (
	"os"

	"github.com/sentinel-paas/sentinel/cluster"
)

// clusterFlag is where the cluster file comes from: --cluster, then
// $SENTINEL_CLUSTER, then /s/etc/sentinel/cluster.yaml as on a core node.
func loadInventory(flag string) (*cluster.Inventory, error) {
	path := flag
	if path == "" {
		path = os.Getenv("SENTINEL_CLUSTER")
	}
	if path == "" {
		path = "/s/etc/sentinel/cluster.yaml"
	}
	return cluster.LoadInventory(path)
}

// dialAll opens a transport to every node. The local transport runs this
// very binary as the node agent, so tests exercise the production path.
func dialAll(inv *cluster.Inventory) (map[string]cluster.Transport, error) {
	binary := os.Getenv("SENTINEL_AGENT_BINARY")
	out := map[string]cluster.Transport{}
	for _, n := range inv.Nodes {
		t, err := cluster.Dial(n, binary)
		if err != nil {
			return nil, err
		}
		out[n.Name] = t
	}
	return out, nil
}
