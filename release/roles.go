package release

// Roles a node can take in the cluster, as in the product's `kato info`.
// Every node implicitly has RoleBase.
const (
	RolePrimary    = "primary"
	RoleController = "controller"
	RoleBase       = "base"
	RoleRouter     = "router"
	RoleDEA        = "dea"
)

var knownRoles = map[string]bool{
	RolePrimary: true, RoleController: true, RoleBase: true, RoleRouter: true, RoleDEA: true,
	"mysql": true, "postgresql": true, "redis": true, "rabbit": true, "memcached": true,
	"filesystem": true, "harbor": true, "mongodb": true, "stager": true, "mdns": true,
	"load_balancer": true,
}

// KnownRole reports whether r is a role sentinel knows.
func KnownRole(r string) bool { return knownRoles[r] }
