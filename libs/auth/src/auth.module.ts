/**
 * The auth service's root module. Its capabilities arrive with their own issues; today it
 * owns its schema and answers on the bus (ping, ping_peers) through the runtime.
 */
import { Module } from '@nestjs/common';

@Module({})
export class AuthModule {}
