#!/bin/sh
# A host that looks like a production MX with years of configuration this deploy
# does not manage: a DKIM milter, SASL settings, a virtual mailbox domain with its
# map and a mailbox, an RBL restriction, regexp header checks, a size limit.
set -eu
postconf -e \
  "smtpd_milters = unix:/run/opendkim/opendkim.sock" \
  'non_smtpd_milters = $smtpd_milters' \
  "milter_default_action = accept" \
  "smtpd_sasl_auth_enable = no" \
  "smtpd_sasl_type = dovecot" \
  "smtpd_sasl_path = private/auth" \
  "smtpd_sasl_security_options = noanonymous" \
  "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, reject_rbl_client zen.spamhaus.org" \
  "virtual_mailbox_domains = virt.example" \
  "virtual_mailbox_maps = hash:/etc/postfix/vmailbox" \
  "virtual_mailbox_base = /var/mail/vhosts" \
  "virtual_uid_maps = static:5000" \
  "virtual_gid_maps = static:5000" \
  "header_checks = regexp:/etc/postfix/header_checks" \
  "message_size_limit = 20480000"
echo "alice@virt.example virt.example/alice" > /etc/postfix/vmailbox
postmap /etc/postfix/vmailbox
printf '%s\n' '/^Subject: .*viagra/ REJECT no thanks' > /etc/postfix/header_checks
mkdir -p /var/mail/vhosts/virt.example
chown -R 5000:5000 /var/mail/vhosts
postfix reload >/dev/null 2>&1
