"""Company login: who may sign in (OIDC, LDAP, local passwords) and what the directory's groups
make of them (roles and teams), renewed at every sign-in. Wired in cratos/settings.py."""
