"""Sandbox hosts have no syslog: Postfix writes its own log file."""

maillog_file = "/var/log/postfix.log"
