"""An example production inventory: copy it, put in your hosts, keep data in group_data/.

pyinfra inventories/example.py deploy.py --dry
"""

mx = [
    ("mx1.example.net", {"ssh_user": "root"}),
    ("mx2.example.net", {"ssh_user": "root", "tls_cert_source": "existing"}),
]
relays = [
    ("relay1.example.net", {"ssh_user": "root", "relayhost": "[smarthost.example.net]:587"}),
]
