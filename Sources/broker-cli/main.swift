print("broker-cli")
