package api

import "fmt"

func decodeV1(kind string, raw []byte) (Object, error) {
	return nil, fmt.Errorf("v1 %s: conversion not implemented yet", kind)
}
