import Foundation

/// Test-only key pairs (generated with openssl for these tests; never used anywhere else):
/// RSA 2048 for RS256 and P-256 for ES256, PEM as `auth.jwt-public-key` and `broker token create
/// --key` read them.
enum TestKeys {
    static let rsaPrivate = """
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCeRnK38K8LtZTj
fKbs5TjkQzv/vYqthxETN92CRgnYqQ+a0OumeJwQqp2WFbBb94GT8+Imflb2IBiq
paM6rsz34Y1M4vrkAThFzzImKjKRjyyAckC3sqFcV7M0QcDq2WBMALmsxmt69XsS
yVZ5mz0lxEwB+x4zMbARaRyqA4RRhcCqafX1Jj4uyntFqTg0AEKVLQ4+JmQWA+PQ
/lO6UMCjDCZCQWjzhz9VY5o/evJx7NvozowQvMTNdbRjjNtHKDeCuSceyk2GBYj9
apCOTwqLDPywXAQdmJK6mDNmvMtFaf5pB7ZV/7mMC4hH/TWVvwE+aLsBl7OxC/CA
45C9DwFJAgMBAAECggEANmIhb9d45g6V4paFqrdWVYROnOCNQnO6574V0/npzzLD
5F+t4MznXwiozhWUu/zu3p35kl1t1vMPVq9ER1khn3i2Ovlw2KAcrEv1wMxWBNLL
qTTYzOXJcPfHYQjI10kqv+Kt6dJhwuWPTNS2bGFtYMkyjqmw5klH5KuXyEkeEX5X
bAEnZHc0umU6NHHnNeEVs4Q1qUENv5KuGGZU2HZHiR9i7GMgbt1T8dDAq+XWOG4n
Y9gtat/03qWkHOc3HUTeetac5esCloKnKgmV5+9cqPfV311VyjJNXUNohza4drUo
bBMpk2+OTi7KTjBKMFEwIxycNvOnWC1/Yj1rMqAiAwKBgQDbhSb13DhYwWOuagQF
hOW91cjGhIOlPXPvpCdKaFtAfvgYGVH6N4JMrcWkp/QyXMhjwD2kBCrnKTshoxbI
H19XiQs+MP1A5gnffdXKye8VqxkGiU/WFYUfbMuEzFt9dinD+NRJmEfBrHEQImE1
YnJwWt3HGzcn7yu/QwctIKLTnwKBgQC4k862wKnmQBrEW65XlSytvyjgy7hvudWS
eVVTVLtBIezG4HGkljjV5wFRz5b12iuPQ8rsGH2zewMu7NQXb5CsF9a20/BXsMEi
rBvDDL+3qdbcM6oHWaBZnEouNliwuiNp2+pxg8Q83Cy64T0R8f6aD0wMKNDUG6Gd
N18sF8FCFwKBgBzwsPI41jTdSgb0cxNHMgKU7KM/VRuzvlUZjxSALYeTNaH3tJcI
OmVhg2zxt3/sO37rGTVGV2GiTelhVt+LQ0aHCrRoQPsNWL/eFxFlDeANbn8uGxhe
Pe6mqS4YwvcHXPo5E8OgD9W4pi86WRZwpCWr1REqxVq+bUYJ0Chi5RSBAoGAPVDE
q8sm5ZlICxDVwryIghNttfeXBm56d1UdNjiAmCt3570po15P9SbvNkk6weM+8zG3
GGUuZNAph44fCsYCDllA961COy85iZYZBtuWWKHwAWicRCLO9NXJgr6FCfhbyU/H
+vul1f3iUhZ+3hZA2NbaEXQBo2SmdH6vfAtMJPMCgYAYgIK4UYA36xq2DyhbC/4G
2KFywpGn3TDl8mffYXCpZIJ5L0IIlvMM91b7tqpxPVy6OcyaZqUPQgZCMwRvT8h9
bkcwRtVXvpWsGC7D1oeieqidPaXunqn9069vkvt6oNs+cJCxOrdOySCB79kyG/he
7CT1N2VP75lvTiRbFVjbcw==
-----END PRIVATE KEY-----
"""

    static let rsaPublic = """
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnkZyt/CvC7WU43ym7OU4
5EM7/72KrYcREzfdgkYJ2KkPmtDrpnicEKqdlhWwW/eBk/PiJn5W9iAYqqWjOq7M
9+GNTOL65AE4Rc8yJioykY8sgHJAt7KhXFezNEHA6tlgTAC5rMZrevV7EslWeZs9
JcRMAfseMzGwEWkcqgOEUYXAqmn19SY+Lsp7Rak4NABClS0OPiZkFgPj0P5TulDA
owwmQkFo84c/VWOaP3rycezb6M6MELzEzXW0Y4zbRyg3grknHspNhgWI/WqQjk8K
iwz8sFwEHZiSupgzZrzLRWn+aQe2Vf+5jAuIR/01lb8BPmi7AZezsQvwgOOQvQ8B
SQIDAQAB
-----END PUBLIC KEY-----
"""

    static let ecPrivate = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghjuaRTU83Bdd+ZBY
aC0EMNpyOqfp5Dau6lv8+Ibn9m2hRANCAARDz6GQv0NhplZTcPNyyhthpF97Cljm
ZPPMctMNlytviIrKS3Kj5ERQyapEMTmLFWd3TzoBivHQfnTRPLh2XT21
-----END PRIVATE KEY-----
"""

    static let ecPublic = """
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ8+hkL9DYaZWU3DzcsobYaRfewpY
5mTzzHLTDZcrb4iKyktyo+REUMmqRDE5ixVnd086AYrx0H500Ty4dl09tQ==
-----END PUBLIC KEY-----
"""

    /// Writes `pem` to a new temporary file and returns its path.
    static func file(_ pem: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString).pem").path
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
