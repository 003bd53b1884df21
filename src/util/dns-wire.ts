/** DNS header flag bits (RFC 1035 §4.1.1, RFC 4035) and the EDNS DO bit, as dns-packet's numeric `flags` carries them. */
export const FLAG_QR = 1 << 15;
export const FLAG_AA = 1 << 10;
export const FLAG_TC = 1 << 9;
export const FLAG_RD = 1 << 8;
export const FLAG_RA = 1 << 7;
export const FLAG_CD = 1 << 4;
export const EDNS_DO = 1 << 15;
